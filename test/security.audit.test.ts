// The audit trail's trust boundary (issue 13), attacked as the issue did on a real local stack:
// nb_migrator (as nb_owner) must neither rewrite nor forge the trail, nor become a superuser through
// code a superuser runs; what a superuser can still do is caught by nbdb audit verify.
import { expect } from "chai";
import { execFile } from "child_process";
import * as path from "path";
import { Client } from "pg";
import { verifyAuditTrail } from "../scripts/ops/audit";
import { up } from "../scripts/local/stack";
import { verifyStack } from "../scripts/ops/verify";
import { LocalStackOutputs, readDataKey } from "../scripts/local/state";
import { asSuperuser, query, rejection, uniqueStack } from "./helpers";

const NBDB = path.join(__dirname, "..", "bin", "nbdb.js");

function nbdb(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [NBDB, ...args], { env: process.env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

/** Statements run as nb_migrator acting as nb_owner (for a user, when given), in one transaction. */
async function asOwner(out: LocalStackOutputs, sql: string, params: unknown[] = [], userId?: string): Promise<void> {
  const c = new Client({ connectionString: out.connections.migrator });
  await c.connect();
  try {
    await c.query("BEGIN");
    await c.query("SET LOCAL ROLE nb_owner");
    if (userId) await c.query("SELECT neuralblitz.set_user_context($1::uuid, NULL)", [userId]);
    await c.query(sql, params);
    await c.query("COMMIT");
  } finally {
    await c.end();
  }
}

async function brokenReasons(out: LocalStackOutputs): Promise<string[]> {
  return (await verifyAuditTrail(out.connections.auditor)).broken.map((b) => b.reason);
}

describe("audit trail trust boundary", function () {
  const stack = uniqueStack("trail");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    await query(out.connections.admin, "INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ('boundary', 'm', '>', 1, 'info')");
  });

  it("gives the trail, its chain and their functions to nb_audit, which nb_migrator cannot become", async function () {
    const owners = await query<{ name: string; owner: string }>(
      out.connections.migrator,
      `SELECT c.relname AS name, pg_get_userbyid(c.relowner) AS owner FROM pg_class c
        WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relname ~ '^golden_dag_' AND c.relkind IN ('r', 'p')
       UNION ALL
       SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p
        WHERE p.pronamespace = 'neuralblitz'::regnamespace AND p.proname ~ '(^golden_dag_|^seal_golden_dag$|^verify_golden_dag$|^archive_golden_dag_partition$)'`,
    );
    expect(owners.length).to.be.greaterThan(10);
    expect(owners.filter((o) => o.owner !== "nb_audit")).to.deep.equal([]);
    const [{ member }] = await query<{ member: boolean }>(out.connections.migrator, "SELECT pg_has_role('nb_migrator', 'nb_audit', 'MEMBER') AS member");
    expect(member).to.equal(false);
    expect(await rejection(query(out.connections.migrator, "SET ROLE nb_audit"))).to.match(/permission denied/);
  });

  it("refuses every rewrite, forgery, re-grant, trigger change, ownership change and drop the owner tried", async function () {
    const [{ part }] = await query<{ part: string }>(
      out.connections.migrator,
      "SELECT inhrelid::regclass::text AS part FROM pg_inherits WHERE inhparent = 'neuralblitz.golden_dag_audit'::regclass ORDER BY 1 DESC LIMIT 1",
    );
    const attacks = [
      "GRANT DELETE, UPDATE, INSERT ON neuralblitz.golden_dag_audit TO nb_migrator",
      "GRANT INSERT ON neuralblitz.golden_dag_seals TO nb_owner",
      "ALTER TABLE neuralblitz.golden_dag_audit DISABLE TRIGGER refuse_rewrite",
      "ALTER TABLE neuralblitz.golden_dag_seals DISABLE TRIGGER ALL",
      `DELETE FROM neuralblitz.golden_dag_audit`,
      `DELETE FROM ${part}`,
      "UPDATE neuralblitz.golden_dag_head SET last_id = NULL",
      "DELETE FROM neuralblitz.golden_dag_seals",
      // The forged entry of the issue: another user's id, nb_app as the login, an hour back.
      `INSERT INTO neuralblitz.golden_dag_audit (recorded_at, table_name, operation, row_pk, db_role, app_user_id)
       VALUES (now() - interval '1 hour', 'users', 'UPDATE', '{"id": 1}', 'nb_app', gen_random_uuid())`,
      "INSERT INTO neuralblitz.golden_dag_archives (partition_name, first_id, last_id, last_hash, entries) VALUES ('x', 1, 2, sha256(''), 2)",
      "ALTER TABLE neuralblitz.golden_dag_audit OWNER TO nb_owner",
      "CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_append() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
      "CREATE OR REPLACE FUNCTION neuralblitz.verify_golden_dag() RETURNS TABLE (id bigint, reason text) LANGUAGE sql AS 'SELECT 1::bigint, ''x'' WHERE false'",
      "DROP TABLE neuralblitz.golden_dag_seals CASCADE",
      "DROP TABLE neuralblitz.golden_dag_archives",
      `DROP TABLE ${part}`,
      "DROP FUNCTION neuralblitz.verify_golden_dag()",
      "ALTER TABLE neuralblitz.golden_dag_audit DETACH PARTITION " + part,
      // A trigger of the trail on a look-alike table would add entries that pass for the real ones.
      `CREATE TABLE neuralblitz.lookalike (id int);
       CREATE TRIGGER golden_dag AFTER INSERT ON neuralblitz.lookalike FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_append()`,
      // A cast to json on the owner's type would run the owner's code inside the audit trigger, as nb_audit.
      `CREATE TYPE neuralblitz.evil_range AS RANGE (subtype = int4);
       CREATE FUNCTION neuralblitz.evil_json(neuralblitz.evil_range) RETURNS json LANGUAGE sql AS 'SELECT ''{}''::json';
       CREATE CAST (neuralblitz.evil_range AS json) WITH FUNCTION neuralblitz.evil_json(neuralblitz.evil_range)`,
    ];
    for (const sql of attacks) {
      expect(await rejection(asOwner(out, sql)), sql).to.match(/permission denied|must be owner|never dropped|other objects depend on it|reserved to the platform administrator|is written only by/);
    }
    // Not even a superuser writes an entry directly: only the trail's own functions do.
    expect(
      await rejection(query(out.connections.admin, "INSERT INTO neuralblitz.golden_dag_audit (table_name, operation, row_pk, db_role) VALUES ('users', 'INSERT', '{}', 'nb_app')")),
    ).to.match(/written only by the audit trail's own functions/);
    expect(await brokenReasons(out)).to.deep.equal([]);
  });

  it("lets nb_app hold the old sealer lock key without stalling the sealer, and bounds a sealer's wait with the holder's pid", async function () {
    const app = new Client({ connectionString: out.connections.app });
    await app.connect();
    const holder = new Client({ connectionString: out.connections.admin, application_name: "holds-the-head" });
    await holder.connect();
    try {
      await app.query("SELECT pg_advisory_lock(hashtext('neuralblitz.seal_golden_dag'))");
      await app.query("SELECT pg_advisory_lock(hashtext('neuralblitz.run_partition_maintenance'))");
      const verdict = await verifyAuditTrail(out.connections.auditor);
      expect(verdict.broken).to.deep.equal([]);
      // Another sealer holding the head: the wait ends at its bound, naming who holds it.
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM neuralblitz.golden_dag_head FOR UPDATE");
      const pid = (await holder.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      const message = await rejection(query(out.connections.auditor, "SELECT neuralblitz.seal_golden_dag(p_wait => interval '200 milliseconds')"));
      expect(message).to.match(/the audit sealer waited/).and.include(`pid ${pid}`).and.include("holds-the-head");
      await holder.query("ROLLBACK");
    } finally {
      await app.end();
      await holder.end();
    }
  });

  it("records disabling the audit trigger, so 'disable, change, enable' is reported by nbdb audit verify", async function () {
    expect(await brokenReasons(out)).to.deep.equal([]);
    const admin = new Client({ connectionString: out.connections.admin });
    await admin.connect();
    let id: string;
    try {
      // The key for this transaction only (a session-level set_config gives none: docs/security.md).
      await admin.query("BEGIN");
      await admin.query("SELECT neuralblitz.set_user_context(NULL, $1)", [readDataKey(stack)]);
      id = (await admin.query(
        `INSERT INTO neuralblitz.users (username, email_encrypted, email_hmac, password_hash)
         VALUES ('victim', neuralblitz.encrypt_secret('victim@example.com'), neuralblitz.lookup_hash('victim@example.com'), '$argon2id$v=19$victim') RETURNING id`,
      )).rows[0].id;
      await admin.query("COMMIT");
    } finally {
      await admin.end();
    }
    await asOwner(out, "ALTER TABLE neuralblitz.users DISABLE TRIGGER golden_dag");
    await asOwner(out, "UPDATE neuralblitz.users SET password_hash = '$argon2id$v=19$attacker' WHERE id = $1", [id], id);
    const [{ hash }] = await query<{ hash: string }>(out.connections.admin, "SELECT password_hash AS hash FROM neuralblitz.users WHERE id = $1", [id]);
    expect(hash).to.equal("$argon2id$v=19$attacker");
    await asOwner(out, "ALTER TABLE neuralblitz.users ENABLE TRIGGER golden_dag");
    const reasons = await brokenReasons(out);
    expect(reasons).to.have.length(1);
    expect(reasons[0]).to.match(/^unaudited window: ALTER TABLE by nb_migrator .* left the audit trigger disabled .* on users/);
    const cli = await nbdb(["audit", "verify", "--stack", stack]);
    expect(cli.code).to.equal(1);
    expect(cli.stdout).to.match(/unaudited window/);
  });

  it("records dropping an audited table's trigger and its TRUNCATE guard too", async function () {
    const before = (await brokenReasons(out)).length;
    await asOwner(out, "DROP TRIGGER golden_dag ON neuralblitz.api_keys");
    await asOwner(out, "ALTER TABLE neuralblitz.monitoring_alerts DISABLE TRIGGER golden_dag_refuse_truncate");
    const reasons = await brokenReasons(out);
    expect(reasons.length).to.equal(before + 2);
    expect(reasons.some((r) => /DROP TRIGGER by nb_migrator .* left the audit trigger missing .* on api_keys/.test(r))).to.equal(true);
    expect(reasons.some((r) => /ALTER TABLE .* TRUNCATE guard disabled on monitoring_alerts/.test(r))).to.equal(true);
  });
});

describe("audit trail tampering a superuser can still do is evident", function () {
  const stack = uniqueStack("tamper");
  let out: LocalStackOutputs;
  let archived: string;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    for (const label of ["a", "b", "c"]) {
      await query(out.connections.admin, "INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ($1, 'm', '>', 1, 'info')", [label]);
    }
    const month = new Date().toISOString().slice(0, 7).replace("-", "");
    await query(out.connections.migrator, `SELECT * FROM neuralblitz.archive_golden_dag_partition('golden_dag_audit_p${month}')`);
    archived = `neuralblitz.golden_dag_audit_p${month}_archived`;
    await query(out.connections.admin, "INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ('after', 'm', '>', 1, 'info')");
    expect(await brokenReasons(out)).to.deep.equal([]);
  });

  it("keeps an archived partition append-only for the owner, and readable by the auditor", async function () {
    for (const sql of [`UPDATE ${archived} SET db_role = 'x'`, `DELETE FROM ${archived}`, `TRUNCATE ${archived}`, `GRANT DELETE ON ${archived} TO nb_owner`, `DROP TABLE ${archived}`]) {
      expect(await rejection(asOwner(out, sql)), sql).to.match(/permission denied|must be owner|never dropped/);
    }
    const [{ n }] = await query<{ n: number }>(out.connections.auditor, `SELECT count(*)::int AS n FROM ${archived}`);
    expect(n).to.be.greaterThan(0);
  });

  it("detects an edited archived partition", async function () {
    const [{ id }] = await query<{ id: string }>(out.connections.admin, `SELECT max(id) AS id FROM ${archived}`);
    await asSuperuser(out, `UPDATE ${archived} SET new_values = '{"forged": true}' WHERE id = $1`, [id]);
    expect((await verifyAuditTrail(out.connections.auditor)).broken).to.deep.include({ id: Number(id), reason: "content altered: the entry does not hash to its sealed entry_hash" });
  });

  it("detects an entry deleted from an archived partition, and a faked archive row", async function () {
    const [{ id }] = await query<{ id: string }>(out.connections.admin, `SELECT min(id) AS id FROM ${archived}`);
    await asSuperuser(out, `DELETE FROM ${archived} WHERE id = $1`, [id]);
    const reasons = await brokenReasons(out);
    expect(reasons.some((r) => /^archive golden_dag_audit_p\d{6}: its table holds \d+ entries/.test(r))).to.equal(true);
    expect(reasons.some((r) => /^missing: sealed into the chain, but gone from the trail/.test(r))).to.equal(true);
    // An archive row for entries deleted from the live trail, to hide them.
    await asSuperuser(out, "INSERT INTO neuralblitz.golden_dag_archives (partition_name, first_id, last_id, last_hash, entries) VALUES ('golden_dag_audit_p199901', 900000, 900001, sha256(''), 2)");
    expect(await brokenReasons(out)).to.include("archive golden_dag_audit_p199901: its table neuralblitz.golden_dag_audit_p199901_archived is gone, or the archive row is forged");
  });
});

describe("no superuser runs code the owner controls", function () {
  const stack = uniqueStack("escalate");
  let out: LocalStackOutputs;

  before(async function () {
    // One replica: the bench measures replica lag.
    out = (await up({ stack, replicas: 1 })).outputs;
  });

  it("leaves nb_migrator no superuser after its trojaned functions met every nbdb command", async function () {
    // Nine commands, a whole bench --quick among them: more than the suite's 180 s on a loaded machine.
    this.timeout(420_000);
    // The attack, in every trigger function and the RLS helper nb_owner owns: the moment a
    // superuser (session or current user) runs it, make nb_migrator a superuser.
    const trojan = `IF (SELECT bool_or(r.rolsuper) FROM pg_catalog.pg_roles r WHERE r.rolname IN (session_user, current_user)) THEN
        BEGIN EXECUTE 'RESET ROLE'; EXCEPTION WHEN OTHERS THEN NULL; END;
        EXECUTE 'ALTER ROLE nb_migrator SUPERUSER';
      END IF;`;
    const defs = await query<{ def: string }>(
      out.connections.migrator,
      `SELECT pg_get_functiondef(p.oid) AS def FROM pg_proc p
        WHERE p.pronamespace = 'neuralblitz'::regnamespace AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
          AND pg_get_userbyid(p.proowner) = 'nb_owner' AND NOT p.prosecdef`,
    );
    expect(defs.map((d) => d.def).join("\n")).to.include("record_neuron_history").and.include("touch_updated_at").and.include("current_user_id");
    for (const { def } of defs) {
      const trojaned = def.replace(/\nBEGIN\n/, `\nBEGIN\n${trojan}\n`).replace(/\b(STABLE|IMMUTABLE)\b/, "VOLATILE");
      expect(trojaned, def).to.not.equal(def);
      await asOwner(out, trojaned);
    }
    const runs: string[][] = [
      ["up", "--stack", stack],
      ["start", "--stack", stack],
      ["seed", "--stack", stack, "--scale", "0.05"],
      ["verify", "--stack", stack],
      ["audit", "verify", "--stack", stack],
      ["maintain", "--stack", stack, "--reindex"],
      ["status", "--stack", stack],
      ["plan", "--stack", stack],
      ["bench", "--quick", "--stack", stack],
    ];
    for (const args of runs) {
      const r = await nbdb(args);
      // verify (and start, which runs it) exit 1: they report the trojaned function bodies, as they should.
      expect(r.code, `nbdb ${args.join(" ")}: ${r.stderr}`).to.equal(["verify", "start"].includes(args[0]) ? 1 : 0);
    }
    expect((await nbdb(["verify", "--stack", stack])).stdout).to.match(/function neuralblitz.record_neuron_history\(\): changed/);
    // What the app does, through the pooler and on its own, also runs the trojans (as nb_app).
    await query(out.connections.app, "SELECT count(*) FROM neuralblitz.quantum_neurons");
    const [{ rolsuper }] = await query<{ rolsuper: boolean }>(out.connections.admin, "SELECT rolsuper FROM pg_roles WHERE rolname = 'nb_migrator'");
    expect(rolsuper).to.equal(false);
    // The trojans did run (as the roles that called them): the seed's neurons still got histories.
    // Counted in the table, not in pg_stat_user_tables: the bench's last figure switches over, and a
    // promoted replica starts with empty statistics. A superuser reads past RLS, calling no policy function.
    const [{ n }] = await query<{ n: number }>(out.connections.admin, "SELECT count(*)::int AS n FROM neuralblitz.quantum_neuron_history");
    expect(n).to.be.greaterThan(0);
  });
});

describe("a stack built before the audit trail's trust boundary", function () {
  it("is upgraded in place by nbdb up: the trail handed to nb_audit, every entry and a head recorded earlier still valid", async function () {
    const stack = uniqueStack("upgrade");
    const out = (await up({ stack, replicas: 0 })).outputs;
    await query(out.connections.admin, "INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ('before', 'm', '>', 1, 'info')");
    await query(out.connections.auditor, "SELECT neuralblitz.seal_golden_dag(interval '0')");
    const recorded = (await verifyAuditTrail(out.connections.auditor)).head;
    expect(recorded.id).to.be.a("number");
    // Back to what the previous version left: everything of the trail nb_owner's, no guard, no
    // event triggers, the audit trigger nb_owner's to change, and no marker of the boundary.
    await query(
      out.connections.admin,
      `DO $$
       DECLARE r record;
       BEGIN
         DROP EVENT TRIGGER golden_dag_ddl;
         DROP EVENT TRIGGER golden_dag_drop;
         FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname ~ '^golden_dag_' LOOP
           EXECUTE format('ALTER TABLE %s OWNER TO nb_owner', r.rel);
         END LOOP;
         FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p WHERE p.pronamespace = 'neuralblitz'::regnamespace AND p.proname ~ 'golden_dag' LOOP
           EXECUTE format('ALTER FUNCTION %s OWNER TO nb_owner', r.fn);
         END LOOP;
         DROP TRIGGER golden_dag_guard ON neuralblitz.golden_dag_audit;
         DROP TRIGGER golden_dag_guard ON neuralblitz.golden_dag_seals;
         COMMENT ON ROLE nb_audit IS NULL;
       END $$`,
    );
    await query(out.connections.admin, "INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ('old version', 'm', '>', 1, 'info')");
    const { changes } = await up({ stack });
    expect(changes).to.include("installed the audit trail's trust boundary (sql/admin/golden_dag_trail.sql)");
    const notAudit = await query(
      out.connections.migrator,
      `SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relname ~ '^golden_dag_' AND c.relkind IN ('r', 'p') AND c.relowner <> 'nb_audit'::regrole`,
    );
    expect(notAudit).to.deep.equal([]);
    const verdict = await verifyAuditTrail(out.connections.auditor, { id: recorded.id!, hash: recorded.hash });
    expect(verdict.broken).to.deep.equal([]);
    expect(verdict.entries).to.be.greaterThan(1);
    expect(await verifyStack(stack)).to.deep.equal([]);
    expect((await up({ stack })).changes).to.deep.equal([]);
  });
});
