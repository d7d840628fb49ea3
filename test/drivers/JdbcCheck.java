// pgJDBC with its defaults (prepareThreshold 5: from the 5th execution a statement is a named
// server-side prepared statement), one connection per thread, autocommit off. Reads the workload
// (test/drivers/workload.py has the same statements) as JSON on stdin; prints one JSON line.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class JdbcCheck {
  // Names the user for this transaction only (docs/security.md); echoes the id the check compares.
  static final String SET_USER = "SELECT ?::text AS user_id, neuralblitz.set_user_context(?::uuid, NULL)";
  static final String SELECT_A = "SELECT 'A'::text AS tag, id::text AS id, user_id::text AS user_id, label FROM neuralblitz.quantum_neurons WHERE amplitude >= ? ORDER BY label";
  static final String SELECT_B = "SELECT 'B'::text AS tag, count(*)::int AS n, ?::text AS echo FROM neuralblitz.quantum_neurons WHERE label LIKE ?";
  static final String UPDATE_C = "UPDATE neuralblitz.quantum_neurons SET coherence = ? WHERE id = ?::uuid RETURNING 'C'::text AS tag, user_id::text AS user_id, coherence, amplitude";
  static final String UPDATE_P = "UPDATE neuralblitz.quantum_neurons SET phase = ? WHERE id = ?::uuid RETURNING 'P'::text AS tag, user_id::text AS user_id, phase, coherence";

  static final List<String> errors = new ArrayList<>();
  static final List<String> mismatches = new ArrayList<>();
  static int transactions = 0;
  static List<String> userIds = new ArrayList<>();
  static List<List<String>> neurons = new ArrayList<>();

  static synchronized void mismatch(String where, String what) { if (mismatches.size() < 20) mismatches.add(where + ": " + what); }
  static synchronized void error(String where, Exception e) { if (errors.size() < 20) errors.add(where + ": " + e); }
  static synchronized void done() { transactions++; }

  static String str(String json, String key) {
    Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*\"([^\"]*)\"").matcher(json);
    if (!m.find()) throw new IllegalArgumentException("no " + key);
    return m.group(1);
  }
  static int num(String json, String key) {
    Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*(\\d+)").matcher(json);
    if (!m.find()) throw new IllegalArgumentException("no " + key);
    return Integer.parseInt(m.group(1));
  }

  static String q(String s) { return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ") + "\""; }

  public static void main(String[] args) throws Exception {
    StringBuilder sb = new StringBuilder();
    try (BufferedReader r = new BufferedReader(new InputStreamReader(System.in))) { String l; while ((l = r.readLine()) != null) sb.append(l); }
    String spec = sb.toString();
    Matcher u = Pattern.compile("\\{\"id\":\"([0-9a-f-]+)\",\"neurons\":\\[([^\\]]*)\\]\\}").matcher(spec);
    while (u.find()) {
      userIds.add(u.group(1));
      List<String> ns = new ArrayList<>();
      for (String n : u.group(2).split(",")) ns.add(n.replace("\"", "").trim());
      neurons.add(ns);
    }
    // TLS verified against the stack's CA, the server's name included (docs/tls.md).
    String url = "jdbc:postgresql://" + str(spec, "host") + ":" + num(spec, "port") + "/" + str(spec, "database")
        + "?sslmode=verify-full&sslrootcert=" + java.net.URLEncoder.encode(str(spec, "caFile"), java.nio.charset.StandardCharsets.UTF_8);
    Properties props = new Properties();
    props.setProperty("user", str(spec, "user"));
    props.setProperty("password", str(spec, "password"));
    int workers = num(spec, "workers");
    int txs = num(spec, "transactions");
    List<Thread> threads = new ArrayList<>();
    for (int w = 0; w < workers; w++) {
      final int wk = w;
      Thread t = new Thread(() -> {
        try (Connection c = DriverManager.getConnection(url, props)) {
          c.setAutoCommit(false);
          for (int k = 0; k < txs; k++) run(c, wk, k);
        } catch (Exception e) { error("worker " + wk, e); }
      });
      threads.add(t);
      t.start();
    }
    for (Thread t : threads) t.join();
    StringBuilder out = new StringBuilder("{\"driver\":\"pgjdbc\",\"transactions\":" + transactions + ",\"errors\":[");
    for (int i = 0; i < errors.size(); i++) out.append(i > 0 ? "," : "").append(q(errors.get(i)));
    out.append("],\"mismatches\":[");
    for (int i = 0; i < mismatches.size(); i++) out.append(i > 0 ? "," : "").append(q(mismatches.get(i)));
    System.out.println(out.append("]}"));
  }

  static void run(Connection c, int w, int k) {
    int ui = (w * 7 + k) % userIds.size();
    String user = userIds.get(ui);
    List<String> ns = neurons.get(ui);
    String neuron = ns.get(k % ns.size());
    double coherence = ((w * 1000 + k) % 997) / 1000.0;
    double phase = ((w * 1000 + k) % 613) / 100.0;
    String where = "worker " + w + " tx " + k;
    String echo = "w" + w + "k" + k;
    try {
      try (PreparedStatement s = c.prepareStatement(SET_USER)) {
        s.setString(1, user);
        s.setString(2, user);
        try (ResultSet r = s.executeQuery()) { r.next(); if (!user.equals(r.getString(1))) mismatch(where, "set_user_context echoed " + r.getString(1)); }
      }
      try (PreparedStatement s = c.prepareStatement(SELECT_A)) {
        s.setDouble(1, 0.0);
        int n = 0;
        try (ResultSet r = s.executeQuery()) {
          while (r.next()) {
            n++;
            if (!"A".equals(r.getString(1))) mismatch(where, "SELECT A returned a row of statement " + r.getString(1));
            else if (!user.equals(r.getString("user_id"))) mismatch(where, "SELECT A returned a row of user " + r.getString("user_id") + ", not " + user);
          }
        }
        if (n != ns.size()) mismatch(where, "SELECT A returned " + n + " rows, the user has " + ns.size());
      }
      try (PreparedStatement s = c.prepareStatement(SELECT_B)) {
        s.setString(1, echo);
        s.setString(2, "%");
        try (ResultSet r = s.executeQuery()) {
          if (!r.next() || !"B".equals(r.getString(1)) || r.getInt(2) != ns.size() || !echo.equals(r.getString(3))) mismatch(where, "SELECT B returned another result");
        }
      }
      update(c, UPDATE_C, "C", coherence, neuron, user, where);
      update(c, UPDATE_P, "P", phase, neuron, user, where);
      c.commit();
      done();
    } catch (Exception e) {
      error(where, e);
      try { c.rollback(); } catch (Exception ignored) { }
    }
  }

  static void update(Connection c, String sql, String tag, double value, String neuron, String user, String where) throws Exception {
    try (PreparedStatement s = c.prepareStatement(sql)) {
      s.setDouble(1, value);
      s.setString(2, neuron);
      try (ResultSet r = s.executeQuery()) {
        if (!r.next() || !tag.equals(r.getString(1)) || !user.equals(r.getString(2)) || Math.abs(r.getDouble(3) - value) > 1e-9 || r.next()) {
          mismatch(where, "UPDATE " + tag + " did not return its one changed row");
        }
      }
    }
  }
}
