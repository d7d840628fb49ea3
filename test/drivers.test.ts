// Real application drivers through the real pooler, each with its defaults: pgJDBC, psycopg 3 (and
// its pipeline mode), asyncpg, postgres.js and node-postgres with named statements. Each runs the
// same workload on 4 connections at once, enough transactions to pass every driver's prepare
// threshold, and must return only the transaction's user's rows, each statement's own result (the
// statements are tagged) and no error. Through PgBouncer 1.18 (no prepared statement pooling)
// every one of them failed, and pgJDBC ran other statements than those it sent.
// Every driver connects over TLS verified against the stack's CA (the spec's caFile) and names the
// user with set_user_context; each must refuse a pooler whose certificate another CA signed.
import { expect } from "chai";
import { execFile } from "child_process";
import { randomUUID } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import postgres from "postgres";
import * as os from "os";
import { NeuralBlitzDb } from "../client";
import { newCa } from "../infra/topology/tls";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, readDataKey, requireStack } from "../scripts/local/state";
import { poolerStats } from "../scripts/local/pooler";
import { rejection, uniqueStack } from "./helpers";

const DRIVERS_DIR = path.join(__dirname, "drivers");
/** Debian's Python, whose python3-psycopg and python3-asyncpg .ci/run installs (not a pyenv one). */
const PYTHON = "/usr/bin/python3";
const JDBC_JAR = "/usr/share/java/postgresql.jar";
const HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

const WORKERS = 4;
/** Per connection; every statement runs once per transaction, so 25 executions each (thresholds: pgJDBC 5, psycopg 5). */
const TRANSACTIONS = 25;
const USERS = 6;
const NEURONS_PER_USER = 3;

interface Spec {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  /** The stack's CA (outputs.tls.caFile): every driver verifies the pooler's certificate and name with it. */
  caFile: string;
  workers: number;
  transactions: number;
  users: { id: string; neurons: string[] }[];
}

interface Report {
  driver: string;
  transactions: number;
  errors: string[];
  mismatches: string[];
}

// The workload's statements, as test/drivers/workload.py and JdbcCheck.java send them.
// The user is named per transaction only by set_user_context (docs/security.md); the id is echoed for the check.
const SET_USER = "SELECT $1::text AS user_id, neuralblitz.set_user_context($2::uuid, NULL)";
const SELECT_A = "SELECT 'A'::text AS tag, id::text AS id, user_id::text AS user_id, label FROM neuralblitz.quantum_neurons WHERE amplitude >= $1 ORDER BY label";
const SELECT_B = "SELECT 'B'::text AS tag, count(*)::int AS n, $1::text AS echo FROM neuralblitz.quantum_neurons WHERE label LIKE $2";
const UPDATE_C = "UPDATE neuralblitz.quantum_neurons SET coherence = $1 WHERE id = $2 RETURNING 'C'::text AS tag, user_id::text AS user_id, coherence, amplitude";
const UPDATE_P = "UPDATE neuralblitz.quantum_neurons SET phase = $1 WHERE id = $2 RETURNING 'P'::text AS tag, user_id::text AS user_id, phase, coherence";

type Row = Record<string, unknown>;

/** The checks of workload.py, for the Node drivers. */
class Checker {
  readonly report: Report;
  constructor(
    driver: string,
    private readonly spec: Spec,
  ) {
    this.report = { driver, transactions: 0, errors: [], mismatches: [] };
  }
  plan(w: number, k: number) {
    const user = this.spec.users[(w * 7 + k) % this.spec.users.length];
    return { user, neuron: user.neurons[k % user.neurons.length], coherence: ((w * 1000 + k) % 997) / 1000, phase: ((w * 1000 + k) % 613) / 100, echo: `w${w}k${k}` };
  }
  private mismatch(where: string, what: string): void {
    if (this.report.mismatches.length < 20) this.report.mismatches.push(`${where}: ${what}`);
  }
  error(where: string, e: unknown): void {
    if (this.report.errors.length < 20) this.report.errors.push(`${where}: ${(e as Error).message}`);
  }
  check(where: string, p: ReturnType<Checker["plan"]>, results: Row[][]): void {
    const [setUser, a, b, c, ph] = results;
    if (setUser.length !== 1 || setUser[0].user_id !== p.user.id) this.mismatch(where, `set_user_context echoed ${JSON.stringify(setUser)}`);
    if (a.length !== p.user.neurons.length) this.mismatch(where, `SELECT A returned ${a.length} rows, the user has ${p.user.neurons.length}`);
    for (const r of a) {
      if (r.tag !== "A") this.mismatch(where, `SELECT A returned a row of statement ${JSON.stringify(r)}`);
      else if (r.user_id !== p.user.id) this.mismatch(where, `SELECT A returned a row of user ${r.user_id}, not ${p.user.id}`);
    }
    if (b.length !== 1 || b[0].tag !== "B" || Number(b[0].n) !== p.user.neurons.length || b[0].echo !== p.echo) this.mismatch(where, `SELECT B returned ${JSON.stringify(b)}`);
    for (const [rows, tag, col, value] of [
      [c, "C", "coherence", p.coherence],
      [ph, "P", "phase", p.phase],
    ] as const) {
      if (rows.length !== 1 || rows[0].tag !== tag || rows[0].user_id !== p.user.id || Math.abs(Number(rows[0][col]) - value) > 1e-9) {
        this.mismatch(where, `UPDATE ${tag} returned ${JSON.stringify(rows)}`);
      }
    }
    this.report.transactions++;
  }
}

function runProgram(cmd: string, args: string[], spec: Spec): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { cwd: DRIVERS_DIR, timeout: 150_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } }, (err, stdout, stderr) => {
      const line = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(line) as Report);
      } catch {
        reject(new Error(`${cmd} ${args.join(" ")} printed no report${err ? ` (${err.message})` : ""}:\n${stdout}\n${stderr}`));
      }
    });
    child.stdin!.end(JSON.stringify(spec));
  });
}

function expectClean(r: Report): void {
  expect(r.errors, `${r.driver} errors`).to.deep.equal([]);
  expect(r.mismatches, `${r.driver}: rows of another user or another statement's result`).to.deep.equal([]);
  expect(r.transactions, `${r.driver} committed transactions`).to.equal(WORKERS * TRANSACTIONS);
}

/** The 5 statements of the workload, on each connection. */
const STATEMENTS = 5;

describe("drivers through the pooler, with their defaults", function () {
  const stack = uniqueStack("drivers");
  let out: LocalStackOutputs;
  let spec: Spec;

  /**
   * Run a driver and check that it really used named prepared statements (not the unnamed ones any
   * pooler passes): the pooler saw a named Parse of every statement on every connection, and far
   * fewer than executions (each prepared once, then executed again and again).
   */
  async function prepared(run: () => Promise<Report>): Promise<Report> {
    const before = (await poolerStats(requireStack(stack), out.database)).clientParses;
    const report = await run();
    const parses = (await poolerStats(requireStack(stack), out.database)).clientParses - before;
    expect(parses, `${report.driver}: named Parse messages the pooler received`).to.be.at.least(WORKERS * STATEMENTS);
    expect(parses, `${report.driver}: named Parse messages the pooler received`).to.be.below((WORKERS * TRANSACTIONS * STATEMENTS) / 2);
    return report;
  }

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    const db = new NeuralBlitzDb({ outputs: out, dataKey: readDataKey(stack), max: 2 });
    const users: Spec["users"] = [];
    try {
      for (let i = 0; i < USERS; i++) {
        const id = randomUUID();
        const neurons = await db.withUser(id, async (tx) => {
          await tx.query(
            `INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash, status)
             VALUES ($1, $2, neuralblitz.encrypt_secret($3), neuralblitz.lookup_hash($3), $4, 'active')`,
            [id, `driver${i}`, `driver${i}@example.com`, HASH],
          );
          const ids: string[] = [];
          for (let j = 0; j < NEURONS_PER_USER; j++) {
            ids.push((await tx.query(`INSERT INTO neuralblitz.quantum_neurons (user_id, label) VALUES ($1, $2) RETURNING id::text AS id`, [id, `u${i}-n${j}`])).rows[0].id);
          }
          return ids;
        });
        // Key order matters: JdbcCheck.java reads exactly {"id":…,"neurons":[…]}.
        users.push({ id, neurons });
      }
    } finally {
      await db.close();
    }
    if (!out.tls) throw new Error("outputs.json has no tls.caFile: the local stack serves TLS only (docs/tls.md)");
    const u = new URL(out.connections.app);
    spec = {
      host: u.hostname,
      port: Number(u.port),
      database: u.pathname.slice(1),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      caFile: out.tls.caFile,
      workers: WORKERS,
      transactions: TRANSACTIONS,
      users,
    };
  });

  describe("startup parameters drivers send", function () {
    async function connectWith(config: Record<string, unknown>): Promise<Record<string, string>> {
      const c = new Client({ connectionString: out.connections.app, ...config });
      await c.connect();
      try {
        return (await c.query("SELECT current_setting('DateStyle') AS datestyle, current_setting('statement_timeout') AS statement_timeout")).rows[0];
      } finally {
        await c.end();
      }
    }

    it("accepts the timeouts (not applied: the role's hold) and applies tracked settings given in options", async function () {
      const role = await connectWith({});
      const got = await connectWith({ statement_timeout: 1234, lock_timeout: 2000, idle_in_transaction_session_timeout: 3000, options: "-c DateStyle=German -c statement_timeout=4321" });
      expect(got.datestyle).to.equal("German, DMY");
      expect(got.statement_timeout, "a client's timeout never stays on the pooled server connection").to.equal(role.statement_timeout);
      // The next client gets the pool's settings back, not the previous client's DateStyle.
      expect((await connectWith({})).datestyle).to.equal(role.datestyle);
    });

    it("refuses search_path in options, naming it (ignored, it would run names against another schema)", async function () {
      expect(await rejection(connectWith({ options: "-c search_path=public" }))).to.match(/unsupported startup parameter in options: search_path/);
    });
  });

  it("pgJDBC (Debian's libpostgresql-jdbc-java; prepareThreshold 5)", async function () {
    if (!fs.existsSync(JDBC_JAR)) throw new Error(`${JDBC_JAR} is missing: .ci/run installs libpostgresql-jdbc-java and default-jdk-headless`);
    expectClean(await prepared(() => runProgram("java", ["-cp", JDBC_JAR, path.join(DRIVERS_DIR, "JdbcCheck.java")], spec)));
  });

  it("psycopg 3 (prepare_threshold 5)", async function () {
    expectClean(await prepared(() => runProgram(PYTHON, ["psycopg_check.py"], spec)));
  });

  it("psycopg 3 in pipeline mode", async function () {
    expectClean(await prepared(() => runProgram(PYTHON, ["psycopg_check.py", "--pipeline"], spec)));
  });

  it("asyncpg (a pool; every statement prepared and cached)", async function () {
    expectClean(await prepared(() => runProgram(PYTHON, ["asyncpg_check.py"], spec)));
  });

  it("asyncpg, one asyncpg.connect() connection per worker", async function () {
    expectClean(await prepared(() => runProgram(PYTHON, ["asyncpg_check.py", "--connect"], spec)));
  });

  it("postgres.js (prepare: true)", async function () {
    expectClean(await prepared(() => postgresJs()));
  });

  async function postgresJs(): Promise<Report> {
    // postgres.js takes the CA as an option (it would send the URL's sslrootcert as a startup parameter).
    const u = new URL(out.connections.app);
    u.search = "";
    const sql = postgres(u.toString(), { max: WORKERS, ssl: { ca: fs.readFileSync(spec.caFile, "utf8") } });
    const check = new Checker("postgres.js", spec);
    try {
      await Promise.all(
        Array.from({ length: WORKERS }, async (_, w) => {
          for (let k = 0; k < TRANSACTIONS; k++) {
            const p = check.plan(w, k);
            try {
              // Tagged templates: postgres.js prepares them by default (sql.unsafe it does not).
              const results = await sql.begin(async (tx) => [
                await tx`SELECT ${p.user.id}::text AS user_id, neuralblitz.set_user_context(${p.user.id}::uuid, NULL)`,
                await tx`SELECT 'A'::text AS tag, id::text AS id, user_id::text AS user_id, label FROM neuralblitz.quantum_neurons WHERE amplitude >= ${0} ORDER BY label`,
                await tx`SELECT 'B'::text AS tag, count(*)::int AS n, ${p.echo}::text AS echo FROM neuralblitz.quantum_neurons WHERE label LIKE ${"%"}`,
                await tx`UPDATE neuralblitz.quantum_neurons SET coherence = ${p.coherence} WHERE id = ${p.neuron} RETURNING 'C'::text AS tag, user_id::text AS user_id, coherence, amplitude`,
                await tx`UPDATE neuralblitz.quantum_neurons SET phase = ${p.phase} WHERE id = ${p.neuron} RETURNING 'P'::text AS tag, user_id::text AS user_id, phase, coherence`,
              ]);
              check.check(`worker ${w} tx ${k}`, p, results.map((r) => [...r] as Row[]));
            } catch (e) {
              check.error(`worker ${w} tx ${k}`, e);
            }
          }
        }),
      );
    } finally {
      await sql.end();
    }
    return check.report;
  }

  it("node-postgres with named statements", async function () {
    expectClean(await prepared(() => nodePostgresNamed()));
  });

  async function nodePostgresNamed(): Promise<Report> {
    const check = new Checker("node-postgres named", spec);
    const clients = await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        const c = new Client({ connectionString: out.connections.app });
        await c.connect();
        return c;
      }),
    );
    try {
      await Promise.all(
        clients.map(async (c, w) => {
          for (let k = 0; k < TRANSACTIONS; k++) {
            const p = check.plan(w, k);
            try {
              await c.query("BEGIN");
              const results: Row[][] = [];
              for (const [name, text, values] of [
                ["nb_set_user", SET_USER, [p.user.id, p.user.id]],
                ["nb_select_a", SELECT_A, [0]],
                ["nb_select_b", SELECT_B, [p.echo, "%"]],
                ["nb_update_c", UPDATE_C, [p.coherence, p.neuron]],
                ["nb_update_p", UPDATE_P, [p.phase, p.neuron]],
              ] as const) {
                results.push((await c.query({ name, text, values: [...values] })).rows);
              }
              await c.query("COMMIT");
              check.check(`worker ${w} tx ${k}`, p, results);
            } catch (e) {
              check.error(`worker ${w} tx ${k}`, e);
              await c.query("ROLLBACK").catch(() => undefined);
            }
          }
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    return check.report;
  }

  describe("TLS: every driver verifies the pooler's certificate against the given CA", function () {
    let otherCa: string;
    before(function () {
      otherCa = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-other-ca-")), "ca.crt");
      fs.writeFileSync(otherCa, newCa("another stack").cert);
    });
    after(function () {
      fs.rmSync(path.dirname(otherCa), { recursive: true, force: true });
    });

    /** The driver's failure with a CA that did not sign the pooler's certificate (no transaction may run). */
    async function refusal(run: () => Promise<Report>): Promise<string> {
      let r: Report;
      try {
        r = await run();
      } catch (e) {
        return (e as Error).message; // the program failed at connect (asyncpg.connect)
      }
      expect(r.transactions, `${r.driver} ran transactions over a connection it could not verify`).to.equal(0);
      return r.errors.join("\n");
    }
    const wrongCa = () => ({ ...spec, caFile: otherCa, workers: 1, transactions: 1 });
    const CERT_REFUSED = /certif|PKIX|self[- ]signed|unable to (get|verify)/i;

    for (const [name, cmd, args] of [
      ["pgJDBC", "java", ["-cp", JDBC_JAR, path.join(DRIVERS_DIR, "JdbcCheck.java")]],
      ["psycopg 3", PYTHON, ["psycopg_check.py"]],
      ["asyncpg", PYTHON, ["asyncpg_check.py", "--connect"]],
      ["SQLAlchemy on psycopg2", PYTHON, ["sqlalchemy_check.py"]],
      ["SQLAlchemy on asyncpg", PYTHON, ["sqlalchemy_check.py", "--async"]],
    ] as const) {
      it(`${name} refuses a pooler whose certificate the CA did not sign`, async function () {
        expect(await refusal(() => runProgram(cmd, [...args], wrongCa()))).to.match(CERT_REFUSED);
      });
    }

    it("postgres.js refuses a pooler whose certificate the CA did not sign", async function () {
      const u = new URL(out.connections.app);
      u.search = "";
      const sql = postgres(u.toString(), { max: 1, ssl: { ca: fs.readFileSync(otherCa, "utf8") } });
      try {
        expect(await rejection(sql`SELECT 1`)).to.match(CERT_REFUSED);
      } finally {
        await sql.end();
      }
    });
  });

  it("SQLAlchemy 1.4 on psycopg2, the user named by an after_begin listener (docs/application.md)", async function () {
    expectClean(await runProgram(PYTHON, ["sqlalchemy_check.py"], spec));
  });

  it("SQLAlchemy 1.4 async on asyncpg, the same listener", async function () {
    expectClean(await prepared(() => runProgram(PYTHON, ["sqlalchemy_check.py", "--async"], spec)));
  });

  it("SQLAlchemy with the user set once in session.begin() fails closed after commit (the trap the guide warns of)", async function () {
    const r = (await runProgram(PYTHON, ["sqlalchemy_check.py", "--naive"], spec)) as unknown as { reload_error: string };
    expect(r.reload_error).to.equal("ObjectDeletedError");
  });
});
