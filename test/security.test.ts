// Attacks on the security model through the real pooler: row-level security, least privilege,
// encrypted columns and the GoldenDAG audit chain.
import { expect } from "chai";
import { execFile } from "child_process";
import { randomUUID } from "crypto";
import * as path from "path";
import { Client, PoolClient } from "pg";
import { NeuralBlitzDb } from "../client";
import { GRANTS, tripleKey, triplesOf } from "../schema/privileges";
import { TABLES, USER_DATA_TABLES } from "../schema/tables";
import { diffGrants, liveGrants } from "../scripts/local/grants";
import { verifyAuditTrail } from "../scripts/ops/audit";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, readDataKey } from "../scripts/local/state";
import { query, rejection, uniqueStack } from "./helpers";

const HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

interface UserFixture {
  id: string;
  email: string;
  network: string;
  neuron: string;
  record: string;
}

/** Creates a user and one row in every user-data table, as the application would, through withUser. */
async function createUser(db: NeuralBlitzDb, name: string): Promise<UserFixture> {
  const id = randomUUID();
  const email = `${name}@example.com`;
  return db.withUser(id, async (tx) => {
    await tx.query(
      `INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash, status)
       VALUES ($1, $2, neuralblitz.encrypt_secret($3), neuralblitz.lookup_hash($3), $4, 'active')`,
      [id, name, email, HASH],
    );
    await tx.query(`INSERT INTO neuralblitz.api_keys (user_id, name, key_prefix, key_hash) VALUES ($1, 'k', $2, sha256(convert_to($2, 'UTF8')))`, [id, `nbk_${name}0001`]);
    await tx.query(
      `INSERT INTO neuralblitz.partner_configs (user_id, partner, endpoint, credentials_encrypted) VALUES ($1, 'acme', 'https://acme.example', neuralblitz.encrypt_secret('token-of-' || $2))`,
      [id, name],
    );
    const [{ id: network }] = (await tx.query(`INSERT INTO neuralblitz.reality_networks (user_id, name) VALUES ($1, 'net') RETURNING id`, [id])).rows;
    await tx.query(`INSERT INTO neuralblitz.reality_nodes (network_id, user_id, coordinates) VALUES ($1, $2, '{0,1}')`, [network, id]);
    const [{ id: neuron }] = (await tx.query(`INSERT INTO neuralblitz.quantum_neurons (user_id, network_id, label) VALUES ($1, $2, 'q') RETURNING id`, [id, network])).rows;
    const [{ id: record }] = (
      await tx.query(`INSERT INTO neuralblitz.consciousness_records (user_id, subject_kind, subject_id, level, stage) VALUES ($1, 'neuron', $2, 5, 'aware') RETURNING id`, [id, neuron])
    ).rows;
    await tx.query(`INSERT INTO neuralblitz.consciousness_snapshots (record_id, user_id, snapshot) VALUES ($1, $2, '{"level": 5}')`, [record, id]);
    return { id, email, network, neuron, record };
  });
}

/** A row of each user-data table filed under `owner`, for insert attacks. */
function insertAs(table: string, owner: UserFixture): [string, unknown[]] {
  const u = owner.id;
  switch (table) {
    case "users":
      return [`INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash) VALUES ($1, 'intruder', neuralblitz.encrypt_secret('i@x'), neuralblitz.lookup_hash('i@x'), '${HASH}')`, [randomUUID()]];
    case "api_keys":
      return [`INSERT INTO neuralblitz.api_keys (user_id, name, key_prefix, key_hash) VALUES ($1, 'k', 'nbk_intruder1', sha256('x'))`, [u]];
    case "partner_configs":
      return [`INSERT INTO neuralblitz.partner_configs (user_id, partner, endpoint) VALUES ($1, 'evil', 'https://evil.example')`, [u]];
    case "quantum_neurons":
      return [`INSERT INTO neuralblitz.quantum_neurons (user_id, label) VALUES ($1, 'x')`, [u]];
    case "quantum_neuron_history":
      return [`INSERT INTO neuralblitz.quantum_neuron_history (neuron_id, user_id, operation) VALUES ($2, $1, 'UPDATE')`, [u, owner.neuron]];
    case "reality_networks":
      return [`INSERT INTO neuralblitz.reality_networks (user_id, name) VALUES ($1, 'evil')`, [u]];
    case "reality_nodes":
      return [`INSERT INTO neuralblitz.reality_nodes (network_id, user_id, coordinates) VALUES ($2, $1, '{9}')`, [u, owner.network]];
    case "consciousness_records":
      return [`INSERT INTO neuralblitz.consciousness_records (user_id, subject_kind, subject_id, level, stage) VALUES ($1, 'node', gen_random_uuid(), 1, 'dormant')`, [u]];
    case "consciousness_snapshots":
      return [`INSERT INTO neuralblitz.consciousness_snapshots (record_id, user_id, snapshot) VALUES ($2, $1, '{}')`, [u, owner.record]];
    default:
      throw new Error(`no insert attack written for ${table}: add one`);
  }
}

/** The outcome of a statement in a savepoint, so one refused attack does not end the transaction. */
async function attempt(tx: PoolClient, sql: string, params: unknown[] = []): Promise<string> {
  await tx.query("SAVEPOINT attack");
  try {
    const r = await tx.query(sql, params);
    await tx.query("RELEASE SAVEPOINT attack");
    return `ok ${r.rowCount}`;
  } catch (e) {
    await tx.query("ROLLBACK TO SAVEPOINT attack");
    return `error: ${(e as Error).message}`;
  }
}

describe("security", function () {
  const stack = uniqueStack("security");
  let out: LocalStackOutputs;
  let db: NeuralBlitzDb;
  let dataKey: string;
  let a: UserFixture;
  let b: UserFixture;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    dataKey = readDataKey(stack);
    db = new NeuralBlitzDb({ outputs: out, dataKey, max: 8 });
    a = await createUser(db, "alice");
    b = await createUser(db, "bob");
  });

  after(async function () {
    await db?.close();
  });

  /** Chain every committed entry now (the scheduled sealer waits a second for commits to settle). */
  async function sealAll(): Promise<number> {
    const [{ n }] = await query<{ n: number }>(out.connections.admin, "SELECT neuralblitz.seal_golden_dag(interval '0') AS n");
    return n;
  }

  describe("row-level security, as nb_app through PgBouncer", function () {
    it("is enabled and forced on exactly the user-data tables", async function () {
      const rows = await query<{ relname: string }>(
        out.connections.admin,
        "SELECT relname FROM pg_class WHERE relnamespace = 'neuralblitz'::regnamespace AND relrowsecurity AND relforcerowsecurity AND NOT relispartition",
      );
      expect(rows.map((r) => r.relname)).to.have.members([...USER_DATA_TABLES]);
    });

    for (const table of TABLES.filter((t) => t.userData).map((t) => t.name)) {
      it(`keeps ${table}: another user's rows are invisible, unchangeable and cannot be written`, async function () {
        await db.withUser(a.id, async (tx) => {
          const seen = await tx.query(`SELECT count(*) FILTER (WHERE user_id = $1)::int AS theirs, count(*) FILTER (WHERE user_id <> $2)::int AS foreign FROM neuralblitz.${table}`, [b.id, a.id]);
          expect(seen.rows[0]).to.deep.equal({ theirs: 0, foreign: 0 });
          const own = await tx.query(`SELECT count(*)::int AS n FROM neuralblitz.${table} WHERE user_id = $1`, [a.id]);
          expect(own.rows[0].n, "own rows").to.be.greaterThan(0);
          const upd = await attempt(tx, `UPDATE neuralblitz.${table} SET user_id = user_id WHERE user_id = $1`, [b.id]);
          expect(upd).to.match(/^ok 0$|permission denied|cannot be updated|column "user_id" can only be updated to DEFAULT/);
          const del = await attempt(tx, `DELETE FROM neuralblitz.${table} WHERE user_id = $1`, [b.id]);
          expect(del).to.match(/^ok 0$|permission denied/);
          const [sql, params] = insertAs(table, b);
          expect(await attempt(tx, sql, params)).to.match(/row-level security|permission denied/);
        });
      });
    }

    it("refuses to move one's own row to another user (WITH CHECK on UPDATE)", async function () {
      const msg = await rejection(db.withUser(a.id, (tx) => tx.query("UPDATE neuralblitz.reality_networks SET user_id = $1 WHERE id = $2", [b.id, a.network])));
      expect(msg).to.match(/row-level security/);
    });

    it("reads through withUser({ readOnly }) as nb_readonly, under the same isolation", async function () {
      const rows = await db.withUser(a.id, async (tx) => (await tx.query("SELECT current_user AS u, count(*)::int AS n, bool_and(user_id = $1) AS own FROM neuralblitz.quantum_neurons", [a.id])).rows, { readOnly: true });
      expect(rows).to.deep.equal([{ u: "nb_readonly", n: 1, own: true }]);
      expect(await rejection(db.withUser(a.id, (tx) => tx.query("DELETE FROM neuralblitz.api_keys"), { readOnly: true }))).to.match(/read-only transaction|permission denied/);
    });

    it("shows no user rows without a user context, and refuses a malformed one", async function () {
      const c = new Client({ connectionString: out.connections.app });
      await c.connect();
      try {
        for (const table of USER_DATA_TABLES) {
          const r = await c.query(`SELECT count(*)::int AS n FROM neuralblitz.${table}`);
          expect(r.rows[0].n, table).to.equal(0);
        }
        await c.query("BEGIN");
        await c.query("SELECT neuralblitz.set_user_context(NULL), set_config('nb.user_id', 'not-a-uuid', true)");
        expect(await rejection(c.query("SELECT * FROM neuralblitz.users"))).to.match(/nb.user_id is not a uuid/);
        await c.query("ROLLBACK");
      } finally {
        await c.end();
      }
    });

    it("never lets a transaction's user context reach another client on the same pooled connection", async function () {
      const c1 = new Client({ connectionString: out.connections.app });
      const c2 = new Client({ connectionString: out.connections.app });
      await c1.connect();
      await c2.connect();
      try {
        // Interleaved transactions on two server connections: each sees only its own user.
        await c1.query("BEGIN");
        await c2.query("BEGIN");
        await c1.query("SELECT neuralblitz.set_user_context($1)", [a.id]);
        await c2.query("SELECT neuralblitz.set_user_context($1)", [b.id]);
        const s1 = await c1.query("SELECT array_agg(DISTINCT user_id) AS u, pg_backend_pid() AS pid FROM neuralblitz.quantum_neurons");
        const s2 = await c2.query("SELECT array_agg(DISTINCT user_id) AS u, pg_backend_pid() AS pid FROM neuralblitz.quantum_neurons");
        expect(s1.rows[0].u).to.deep.equal([a.id]);
        expect(s2.rows[0].u).to.deep.equal([b.id]);
        await c1.query("COMMIT");
        await c2.query("COMMIT");
        // In turn, the next transaction of another client gets a server connection that just
        // carried a user's transaction, and sees nothing of it.
        // (The pooler resets a connection before it reuses it, so the next client may get another one
        // meanwhile: try until it has been served by the one that carried the user, at least once.)
        let reused = 0;
        for (let i = 0; i < 30 && reused < 3; i++) {
          await c1.query("BEGIN");
          await c1.query("SELECT neuralblitz.set_user_context($1)", [a.id]);
          const used = (await c1.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
          await c1.query("COMMIT");
          // Let the pooler finish resetting that connection, so it is the idle one it hands out next (LIFO).
          await new Promise((r) => setTimeout(r, 100));
          const after = await c2.query("SELECT pg_backend_pid() AS pid, current_setting('nb.user_id', true) AS ctx, (SELECT count(*)::int FROM neuralblitz.users) AS n");
          expect(after.rows[0].ctx ?? "").to.equal("");
          expect(after.rows[0].n).to.equal(0);
          if (after.rows[0].pid === used) reused++;
        }
        expect(reused, "later transactions served by the connection that had carried a user").to.be.greaterThan(0);
      } finally {
        await c1.end();
        await c2.end();
      }
    });
  });

  describe("least privilege", function () {
    it("grants exactly the privilege model: nothing missing, nothing extra, nothing to PUBLIC", async function () {
      const c = new Client({ connectionString: out.connections.admin });
      await c.connect();
      try {
        const live = await liveGrants(c);
        const diff = diffGrants(triplesOf(GRANTS), live);
        expect(diff).to.deep.equal({ missing: [], extra: [] });
        expect(live.filter((t) => t.role === "PUBLIC").map(tripleKey)).to.deep.equal([]);
      } finally {
        await c.end();
      }
      expect(GRANTS.filter((g) => g.privileges.length === 0)).to.deep.equal([]);
    });

    it("keeps nb_readonly from writing", async function () {
      const readonly = out.connections.readonly;
      expect(await rejection(query(readonly, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), 'x', 1, 'y')"))).to.match(/permission denied/);
      expect(await rejection(query(readonly, "UPDATE neuralblitz.users SET status = status"))).to.match(/permission denied/);
    });

    it("lets nb_auditor read the audit trail and verify it, and nothing else", async function () {
      const auditor = out.connections.auditor;
      expect(await rejection(query(auditor, "SELECT * FROM neuralblitz.users"))).to.match(/permission denied/);
      expect(await rejection(query(auditor, "SELECT * FROM neuralblitz.metrics"))).to.match(/permission denied/);
      const [{ n }] = await query<{ n: number }>(auditor, "SELECT count(*)::int AS n FROM neuralblitz.golden_dag_audit");
      expect(n).to.be.greaterThan(0);
      expect(await query(auditor, "SELECT * FROM neuralblitz.verify_golden_dag()")).to.deep.equal([]);
    });

    it("gives tables nb_owner creates later the default grants, but never a partition", async function () {
      const owner = new Client({ connectionString: out.connections.migrator });
      await owner.connect();
      try {
        await owner.query("SET ROLE nb_owner");
        await owner.query("CREATE TABLE neuralblitz.later_table (id int PRIMARY KEY)");
        await owner.query("SELECT * FROM neuralblitz.run_partition_maintenance(now() + interval '60 days')");
      } finally {
        await owner.end();
      }
      const [later] = await query<{ r: boolean; app: boolean }>(
        out.connections.admin,
        "SELECT has_table_privilege('nb_readonly', 'neuralblitz.later_table', 'SELECT') AS r, has_table_privilege('nb_app', 'neuralblitz.later_table', 'INSERT') AS app",
      );
      expect(later).to.deep.equal({ r: true, app: false });
      const leaked = await query(
        out.connections.admin,
        `SELECT c.relname FROM pg_class c, aclexplode(c.relacl) a
          WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relispartition AND a.grantee <> c.relowner`,
      );
      expect(leaked).to.deep.equal([]);
      await query(out.connections.admin, "DROP TABLE neuralblitz.later_table");
    });

    it("pins search_path in every SECURITY DEFINER function", async function () {
      const rows = await query<{ fn: string; config: string[] | null }>(
        out.connections.admin,
        `SELECT p.oid::regprocedure::text AS fn, p.proconfig AS config FROM pg_proc p
          WHERE p.prosecdef AND p.pronamespace IN ('neuralblitz'::regnamespace, 'pgbouncer'::regnamespace)`,
      );
      expect(rows.length).to.be.greaterThan(3);
      for (const r of rows) expect(r.config, r.fn).to.include("search_path=pg_catalog, pg_temp");
    });
  });

  describe("the audit trail is append-only", function () {
    it("refuses UPDATE, DELETE, TRUNCATE and trigger changes from nb_app", async function () {
      const app = new Client({ connectionString: out.connections.app });
      await app.connect();
      try {
        for (const sql of [
          "UPDATE neuralblitz.golden_dag_audit SET db_role = 'x'",
          "DELETE FROM neuralblitz.golden_dag_audit",
          "TRUNCATE neuralblitz.golden_dag_audit",
          "ALTER TABLE neuralblitz.golden_dag_audit DISABLE TRIGGER refuse_rewrite",
          "ALTER TABLE neuralblitz.users DISABLE TRIGGER golden_dag",
        ]) {
          expect(await rejection(app.query(sql)), sql).to.match(/permission denied|must be owner/);
        }
      } finally {
        await app.end();
      }
    });

    it("refuses UPDATE, DELETE and TRUNCATE from the owner too, on the table and on its partitions", async function () {
      const owner = new Client({ connectionString: out.connections.migrator });
      await owner.connect();
      try {
        await owner.query("SET ROLE nb_owner");
        const [{ part }] = (await owner.query("SELECT inhrelid::regclass::text AS part FROM pg_inherits WHERE inhparent = 'neuralblitz.golden_dag_audit'::regclass ORDER BY 1 LIMIT 1")).rows;
        for (const sql of [
          "UPDATE neuralblitz.golden_dag_audit SET db_role = 'x'",
          "DELETE FROM neuralblitz.golden_dag_audit",
          "TRUNCATE neuralblitz.golden_dag_audit",
          `UPDATE ${part} SET db_role = 'x'`,
          `DELETE FROM ${part}`,
          `TRUNCATE ${part}`,
          "DELETE FROM neuralblitz.golden_dag_audit_default",
          "TRUNCATE neuralblitz.golden_dag_audit_default",
          "SET nb.partition_maintenance = on; DELETE FROM neuralblitz.golden_dag_audit_default",
          "UPDATE neuralblitz.golden_dag_seals SET entry_hash = prev_hash",
          "DELETE FROM neuralblitz.golden_dag_seals",
          "TRUNCATE neuralblitz.golden_dag_seals",
        ]) {
          expect(await rejection(owner.query(sql)), sql).to.match(/permission denied|append-only/);
        }
      } finally {
        await owner.end();
      }
    });
  });

  describe("encrypted columns", function () {
    it("store ciphertext only, decrypt with the stack's key, and fail with a wrong or missing key", async function () {
      const [row] = await query<{ email_encrypted: Buffer; credentials: Buffer }>(
        out.connections.admin,
        `SELECT u.email_encrypted, p.credentials_encrypted AS credentials FROM neuralblitz.users u JOIN neuralblitz.partner_configs p ON p.user_id = u.id WHERE u.id = $1`,
        [a.id],
      );
      expect(row.email_encrypted.includes(Buffer.from(a.email))).to.equal(false);
      expect(row.email_encrypted.includes(Buffer.from("alice"))).to.equal(false);
      expect(row.credentials.includes(Buffer.from("token-of-alice"))).to.equal(false);

      const email = await db.withUser(a.id, async (tx) => (await tx.query("SELECT neuralblitz.decrypt_secret(email_encrypted) AS e FROM neuralblitz.users")).rows[0].e);
      expect(email).to.equal(a.email);
      const found = await db.withUser(a.id, async (tx) => (await tx.query("SELECT id FROM neuralblitz.users WHERE email_hmac = neuralblitz.lookup_hash($1)", [a.email])).rows);
      expect(found).to.deep.equal([{ id: a.id }]);

      const wrong = new NeuralBlitzDb({ outputs: out, dataKey: "w".repeat(43), max: 1 });
      try {
        expect(await rejection(wrong.withUser(a.id, (tx) => tx.query("SELECT neuralblitz.decrypt_secret(email_encrypted) FROM neuralblitz.users")))).to.match(/Wrong key or corrupt data/);
      } finally {
        await wrong.close();
      }
      const c = new Client({ connectionString: out.connections.app });
      await c.connect();
      try {
        expect(await rejection(c.query("SELECT neuralblitz.encrypt_secret('plain')"))).to.match(/no data key for this transaction/);
        expect(await rejection(c.query("SELECT neuralblitz_crypto.pgp_sym_encrypt('plain', 'k')"))).to.match(/permission denied for schema/);
      } finally {
        await c.end();
      }
    });

    it("keep the key out of every database and role default", async function () {
      const rows = await query<{ setting: string }>(out.connections.admin, "SELECT unnest(setconfig) AS setting FROM pg_db_role_setting");
      expect(rows.map((r) => r.setting).filter((s) => s.includes(dataKey) || s.startsWith("nb.data_key"))).to.deep.equal([]);
    });
  });

  describe("the GoldenDAG chain", function () {
    it("records each change of an audited table with role, user and changed columns", async function () {
      await db.withUser(a.id, (tx) => tx.query("UPDATE neuralblitz.reality_networks SET status = 'active' WHERE id = $1", [a.network]));
      const [entry] = await query<Record<string, unknown>>(
        out.connections.auditor,
        "SELECT table_name, operation, row_pk, db_role, app_user_id, old_values, new_values FROM neuralblitz.golden_dag_audit WHERE table_name = 'reality_networks' AND operation = 'UPDATE' ORDER BY id DESC LIMIT 1",
      );
      expect(entry.table_name).to.equal("reality_networks");
      expect(entry.row_pk).to.deep.equal({ id: a.network });
      expect(entry.db_role).to.equal("nb_app");
      expect(entry.app_user_id).to.equal(a.id);
      expect((entry.old_values as Record<string, unknown>).status).to.equal("provisioning");
      expect((entry.new_values as Record<string, unknown>).status).to.equal("active");
      expect(Object.keys(entry.new_values as object)).to.have.members(["status", "updated_at"]);
      const [users] = await query<{ v: Record<string, unknown> }>(
        out.connections.auditor,
        "SELECT new_values AS v FROM neuralblitz.golden_dag_audit WHERE table_name = 'users' AND operation = 'INSERT' LIMIT 1",
      );
      expect(users.v.password_hash).to.equal("[redacted]");
      expect(users.v.email_encrypted).to.equal("[redacted]");
    });

    it("is appended by exactly the tables the model marks as audited", async function () {
      const rows = await query<{ t: string }>(out.connections.admin, "SELECT tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname = 'golden_dag' ORDER BY 1");
      expect(rows.map((r) => r.t.replace("neuralblitz.", ""))).to.have.members(TABLES.filter((t) => t.audited).map((t) => t.name));
      expect(await rejection(query(out.connections.admin, "TRUNCATE neuralblitz.monitoring_alerts"))).to.match(/would leave no audit entries/);
    });

    it("lets 8 concurrent writers append side by side, then seals them into one intact chain in commit order", async function () {
      await sealAll();
      const before = await verifyAuditTrail(out.connections.auditor);
      const writers = 8;
      const perWriter = 20;
      const pool = new NeuralBlitzDb({ outputs: out, dataKey, max: writers });
      try {
        await Promise.all(
          Array.from({ length: writers }, async (_, w) => {
            for (let i = 0; i < perWriter; i++) {
              await pool.withUser(w % 2 ? a.id : b.id, (tx) =>
                tx.query("UPDATE neuralblitz.reality_nodes SET health = $1 WHERE user_id = (SELECT neuralblitz.current_user_id())", [((w * perWriter + i) % 100) / 100]),
              );
            }
          }),
        );
      } finally {
        await pool.close();
      }
      const sealed = await sealAll();
      expect(sealed).to.be.at.least(writers * perWriter * 0.9);
      const after = await verifyAuditTrail(out.connections.auditor);
      expect(after.broken).to.deep.equal([]);
      expect(after.unsealed).to.equal(0);
      expect(after.entries - before.entries).to.equal(sealed);
      // Chain order is commit order: each seal's transaction committed no later than the next one's.
      const outOfOrder = await query(
        out.connections.admin,
        `SELECT s.entry_id FROM neuralblitz.golden_dag_seals s JOIN neuralblitz.golden_dag_seals p ON p.entry_id = s.prev_id
          WHERE p.committed_at > s.committed_at`,
      );
      expect(outOfOrder).to.deep.equal([]);
    });

    it("catches a consistent rewrite of the chain's end against a head recorded earlier", async function () {
      await sealAll();
      const recorded = (await verifyAuditTrail(out.connections.auditor)).head;
      const admin = new Client({ connectionString: out.connections.admin });
      await admin.connect();
      try {
        // A superuser rewrites the last entry and recomputes its seal and the head: every link holds.
        await admin.query("SET session_replication_role = replica");
        await admin.query(`UPDATE neuralblitz.golden_dag_audit SET new_values = '{"rewritten": true}' WHERE id = $1`, [recorded.id]);
        await admin.query(
          `UPDATE neuralblitz.golden_dag_seals s SET entry_hash = sha256(s.prev_hash || neuralblitz.golden_dag_canonical(
             a.id, a.recorded_at, a.table_name, a.operation, a.row_pk, a.db_role, a.app_user_id, a.old_values, a.new_values, s.prev_id))
             FROM neuralblitz.golden_dag_audit a WHERE a.id = s.entry_id AND s.entry_id = $1`,
          [recorded.id],
        );
        await admin.query("UPDATE neuralblitz.golden_dag_head h SET last_hash = s.entry_hash FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = h.last_id");
      } finally {
        await admin.end();
      }
      expect((await verifyAuditTrail(out.connections.auditor)).broken).to.deep.equal([]);
      const checked = await verifyAuditTrail(out.connections.auditor, { id: recorded.id!, hash: recorded.hash });
      expect(checked.broken).to.have.length(1);
      expect(checked.broken[0]).to.include({ id: recorded.id });
      expect(checked.broken[0].reason).to.match(/the chain was rewritten/);
    });

    it("names exactly the entry a superuser altered, then exactly the one deleted", async function () {
      await sealAll();
      const admin = new Client({ connectionString: out.connections.admin });
      await admin.connect();
      try {
        // A superuser can bypass the refusing triggers; verification is what catches it.
        await admin.query("SET session_replication_role = replica");
        const ids = (await admin.query("SELECT entry_id AS id FROM neuralblitz.golden_dag_seals ORDER BY entry_id")).rows.map((r) => Number(r.id));
        const victim = ids[Math.floor(ids.length / 2)];
        const original = (await admin.query("SELECT new_values FROM neuralblitz.golden_dag_audit WHERE id = $1", [victim])).rows[0].new_values;
        await admin.query(`UPDATE neuralblitz.golden_dag_audit SET new_values = '{"forged": true}' WHERE id = $1`, [victim]);
        expect((await verifyAuditTrail(out.connections.auditor)).broken).to.deep.equal([{ id: victim, reason: "content altered: the entry does not hash to its sealed entry_hash" }]);
        await admin.query("UPDATE neuralblitz.golden_dag_audit SET new_values = $2 WHERE id = $1", [victim, original]);
        expect((await verifyAuditTrail(out.connections.auditor)).broken).to.deep.equal([]);

        const gone = ids[Math.floor(ids.length / 3)];
        await admin.query("DELETE FROM neuralblitz.golden_dag_audit WHERE id = $1", [gone]);
        const verdict = await verifyAuditTrail(out.connections.auditor);
        expect(verdict.broken.map((x) => x.id)).to.deep.equal([gone]);
        expect(verdict.broken[0].reason).to.match(/^missing: sealed into the chain, but gone from the trail/);

        const unlinked = ids[Math.floor(ids.length / 4)];
        await admin.query("DELETE FROM neuralblitz.golden_dag_seals WHERE entry_id = $1", [unlinked]);
        expect((await verifyAuditTrail(out.connections.auditor)).broken.map((x) => x.id)).to.include(unlinked);
        const cli = await new Promise<{ code: number; stdout: string }>((resolve) =>
          execFile(process.execPath, [path.join(__dirname, "..", "bin", "nbdb.js"), "audit", "verify", "--stack", stack], (err, stdout) =>
            resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout }),
          ),
        );
        expect(cli.code).to.equal(1);
        expect(cli.stdout).to.match(new RegExp(`audit chain BROKEN: \\d+ of \\d+ entries\\n(.*\\n)*  entry ${gone}: missing: sealed`));
      } finally {
        await admin.end();
      }
    });
  });
});
