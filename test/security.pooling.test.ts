// Attacks on pooled sessions, the pooler and the platform's own locks, against a real stack through
// the real PgBouncer (issue 12; issue 16 items 6 and 7). Each test fails if its attack works again.
import { expect } from "chai";
import { randomUUID } from "crypto";
import * as net from "net";
import { Client } from "pg";
import { NeuralBlitzDb } from "../client";
import { applyBundles } from "../infra/bundles/applier";
import { loadCatalog } from "../infra/bundles/catalog";
import { POOLER_FAILURE_SETTINGS } from "../infra/topology/pgbouncerIni";
import { ROLE_TIMEOUT_DEFAULTS } from "../schema/roles";
import { maintainPartitions } from "../scripts/local/partitions";
import { localContext } from "../scripts/local/context";
import { startNode, stopNode } from "../scripts/local/postgresNode";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, loadState, readDataKey } from "../scripts/local/state";
import { query, rejection, uniqueStack } from "./helpers";
import { expectCleanSession, leaveSessionState, sessionStateOf } from "./sessionLeak";

const HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
const LATER_CLIENTS = 45;

function urlWith(url: string, changes: { user?: string; password?: string; port?: number; database?: string }): string {
  const u = new URL(url);
  if (changes.user) u.username = changes.user;
  if (changes.password) u.password = encodeURIComponent(changes.password);
  if (changes.port) u.port = String(changes.port);
  if (changes.database) u.pathname = `/${changes.database}`;
  return u.toString();
}

async function connected(url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

/** A PostgreSQL startup packet (protocol 3.0) for `user` and `database`, as an unauthenticated client sends it. */
function startupPacket(user: string, database: string): Buffer {
  const body = Buffer.concat([Buffer.from([0, 3, 0, 0]), Buffer.from(`user\0${user}\0database\0${database}\0\0`)]);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length + 4);
  return Buffer.concat([len, body]);
}

describe("security: pooled sessions, the pooler and the platform's locks", function () {
  this.timeout(240_000);
  const stack = uniqueStack("pooling");
  let out: LocalStackOutputs;
  let dataKey: string;
  let db: NeuralBlitzDb;
  const victim = randomUUID();

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    dataKey = readDataKey(stack);
    db = new NeuralBlitzDb({ outputs: out, dataKey, max: 4 });
    await db.withUser(victim, (tx) =>
      tx.query(
        `INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash, status)
         VALUES ($1, 'victim', neuralblitz.encrypt_secret('victim@example.com'), neuralblitz.lookup_hash('victim@example.com'), $2, 'active')`,
        [victim, HASH],
      ),
    );
  });

  after(async function () {
    await db?.close();
  });

  describe("session state never reaches another client's transaction", function () {
    it(`leaves nothing of a client's session-level state to ${LATER_CLIENTS} later clients`, async function () {
      const attacker = await connected(out.connections.app);
      let attackerConnection: string;
      try {
        attackerConnection = await leaveSessionState(attacker, victim, dataKey);
      } finally {
        await attacker.end();
      }
      const connections = new Set<string>();
      for (let i = 0; i < LATER_CLIENTS; i++) {
        const c = await connected(out.connections.app);
        try {
          const s = await sessionStateOf(c);
          connections.add(s.connection);
          expectCleanSession(s, ROLE_TIMEOUT_DEFAULTS.nb_app.statementMs, `client ${i}`);
          expect(await rejection(c.query("SELECT neuralblitz.decrypt_secret(neuralblitz.encrypt_secret('x'))"))).to.match(/no data key for this transaction/);
          // The next client writes: a leaked read-only default would refuse it.
          await c.query("INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), 'pooling_probe', 1, 'test')");
        } finally {
          await c.end();
        }
      }
      // The probe means something only if later clients got the attacker's server connection.
      expect([...connections], "a later client reused the attacker's server connection").to.include(attackerConnection!);
    });

    it("gives no later transaction of the same session a user or key set at session level, even with a copied stamp", async function () {
      // Directly on the primary (no pooler reset in between), as nb_app by SET ROLE.
      const c = await connected(out.connections.admin);
      try {
        await c.query("BEGIN");
        await c.query("SELECT neuralblitz.set_user_context($1, $2)", [victim, dataKey]);
        // Copy the stamp, the user and the key to session level before the transaction ends.
        await c.query(
          "SELECT set_config('nb.context_at', current_setting('nb.context_at'), false), set_config('nb.user_id', $1, false), set_config('nb.data_key', $2, false)",
          [victim, dataKey],
        );
        await c.query("COMMIT");
        expect((await c.query("SELECT current_setting('nb.user_id') AS u")).rows[0].u).to.equal(victim);
        await c.query("BEGIN");
        await c.query("SET LOCAL ROLE nb_app");
        const r = await c.query("SELECT neuralblitz.current_user_id() AS u, (SELECT count(*)::int FROM neuralblitz.users) AS n");
        expect(r.rows[0]).to.deep.equal({ u: null, n: 0 });
        expect(await rejection(c.query("SELECT neuralblitz.lookup_hash('victim@example.com')"))).to.match(/no data key for this transaction/);
        await c.query("ROLLBACK");
      } finally {
        await c.end();
      }
    });

    it("records in the audit trail only the user a transaction named itself, never one left at session level", async function () {
      const c = await connected(out.connections.admin);
      const trailUser = async (nameUser: string): Promise<string | null> => {
        await c.query("BEGIN");
        await c.query(nameUser, [victim]);
        const [{ id }] = (await c.query("UPDATE neuralblitz.users SET username = 'probe-' || md5(random()::text) WHERE id = $1 RETURNING (SELECT max(id) FROM neuralblitz.golden_dag_audit) AS id", [victim])).rows;
        const [{ u }] = (await c.query("SELECT app_user_id::text AS u FROM neuralblitz.golden_dag_audit WHERE id > coalesce($1, 0) ORDER BY id DESC LIMIT 1", [id])).rows;
        await c.query("ROLLBACK");
        return u;
      };
      try {
        // Left on the connection at session level (or set without the transaction's stamp): no one.
        expect(await trailUser("SELECT set_config('nb.user_id', $1, false)")).to.equal(null);
        expect(await trailUser("SELECT set_config('nb.user_id', $1, true)")).to.equal(null);
        // Named for this transaction: recorded.
        expect(await trailUser("SELECT neuralblitz.set_user_context($1)")).to.equal(victim);
      } finally {
        await c.end();
      }
    });

    it("still isolates correctly named transactions (withUser) after a session-level attack", async function () {
      const n = await db.withUser(victim, async (tx) => (await tx.query("SELECT count(*)::int AS n FROM neuralblitz.users")).rows[0].n);
      expect(n).to.equal(1);
    });
  });

  describe("the pooler", function () {
    it("serves a normal login after 1,100 unauthenticated logins to the admin database", async function () {
      // Unknown users, no credentials, the admin database: with a global auth_user PgBouncer never
      // answered these and never freed their slots (PgBouncer issue #798).
      const answered = await Promise.all(
        Array.from({ length: 1100 }, (_, i) =>
          new Promise<boolean>((resolve) => {
            const s = net.connect(out.pooler.port, out.pooler.host, () => s.write(startupPacket(`nobody_${i}`, "pgbouncer")));
            const timer = setTimeout(() => (s.destroy(), resolve(false)), 20_000);
            s.once("data", () => (clearTimeout(timer), s.destroy(), resolve(true)));
            s.once("error", () => (clearTimeout(timer), resolve(false)));
          }),
        ),
      );
      expect(answered.filter((a) => !a).length, "logins the pooler never answered").to.equal(0);
      // Their slots are free again: a normal login is served (closing sockets are noticed within moments).
      let served: unknown;
      for (let i = 0; i < 50 && served === undefined; i++) {
        served = await query<{ one: number }>(out.connections.app, "SELECT 1 AS one").catch(() => new Promise((r) => setTimeout(() => r(undefined), 100)));
      }
      expect(served).to.deep.equal([{ one: 1 }]);
    });

    it("ends idle-in-transaction holders, so a fresh client is served instead of hanging", async function () {
      const holders = await Promise.all(Array.from({ length: 25 }, () => connected(out.connections.app)));
      const holderErrors: string[] = [];
      try {
        for (const h of holders) {
          h.on("error", (e) => holderErrors.push(e.message));
          await h.query("BEGIN; SELECT 1");
        }
        const started = Date.now();
        const rows = await query<{ one: number }>(out.connections.app, "SELECT 1 AS one");
        expect(rows).to.deep.equal([{ one: 1 }]);
        // Served once the pooler ended holders (idle_transaction_timeout), well before query_wait_timeout.
        expect(Date.now() - started).to.be.below((POOLER_FAILURE_SETTINGS.queryWaitTimeout + 2) * 1000);
        expect(await rejection(holders[0].query("SELECT 1"))).to.match(/idle transaction timeout|terminat|connection error|not queryable|closed/i);
      } finally {
        await Promise.all(holders.map((h) => h.end().catch(() => undefined)));
      }
    });

    it("serves clients again within seconds of a short primary outage (server_login_retry)", async function () {
      const ctx = localContext(stack, () => undefined);
      // A pooled connection exists, then the primary goes away and logins fail.
      await query(out.connections.app, "SELECT 1");
      await stopNode(ctx, "primary");
      expect(await rejection(query(out.connections.app, "SELECT 1"))).to.match(/.+/);
      await startNode(ctx, "primary");
      const back = Date.now();
      let served = false;
      while (!served && Date.now() - back < 15_000) {
        served = await query(out.connections.app, "SELECT 1").then(
          () => true,
          () => new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
        );
      }
      expect(served, "served after the outage").to.equal(true);
      expect(Date.now() - back).to.be.below((POOLER_FAILURE_SETTINGS.serverLoginRetry + 4) * 1000);
    });
  });

  describe("role hardening", function () {
    it("refuses nb_app and nb_auditor straight to the primary over TCP, and project roles in database postgres", async function () {
      const state = loadState(stack)!;
      for (const role of ["nb_app", "nb_auditor"] as const) {
        const direct = urlWith(out.connections.migrator, { user: role, password: state.passwords[role] });
        expect(await rejection(query(direct, "SELECT 1")), role).to.match(/pg_hba\.conf rejects connection/);
      }
      const intoPostgres = urlWith(out.connections.migrator, { database: "postgres" });
      expect(await rejection(query(intoPostgres, "SELECT 1"))).to.match(/pg_hba\.conf rejects connection/);
      // Through the pooler they are served.
      expect(await query(out.connections.auditor, "SELECT 1 AS one")).to.deep.equal([{ one: 1 }]);
    });

    it("puts nb_app's statement, lock and idle-in-transaction timeouts in force", async function () {
      const t = ROLE_TIMEOUT_DEFAULTS.nb_app;
      const [r] = await query(out.connections.app, `SELECT ${["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"].map((g) => `(EXTRACT(epoch FROM current_setting('${g}')::interval) * 1000)::int AS ${g}`).join(", ")}`);
      expect(r).to.deep.equal({ statement_timeout: t.statementMs, lock_timeout: t.lockMs, idle_in_transaction_session_timeout: t.idleInTransactionMs });
      // LOCK TABLE ... ACCESS EXCLUSIVE by one client no longer stalls the others: they get an error.
      const locker = await connected(out.connections.app);
      try {
        await locker.query("BEGIN; LOCK TABLE neuralblitz.users IN ACCESS EXCLUSIVE MODE");
        const reader = await connected(out.connections.app);
        try {
          const msg = await rejection(reader.query("SELECT count(*) FROM neuralblitz.users"));
          expect(msg).to.match(/lock timeout/);
        } finally {
          await reader.end();
        }
      } finally {
        await locker.end().catch(() => undefined);
      }
      const [ro] = await query(out.connections.readonly, "SELECT (EXTRACT(epoch FROM current_setting('statement_timeout')::interval) * 1000)::int AS s");
      expect(ro.s).to.equal(ROLE_TIMEOUT_DEFAULTS.nb_readonly.statementMs);
    });

    it("repairs ALTER ROLE by nb_app (settings, password) on the next up", async function () {
      await query(out.connections.app, "ALTER ROLE nb_app SET default_transaction_read_only = on");
      await query(out.connections.app, "ALTER ROLE nb_app IN DATABASE neuralblitz SET statement_timeout = 0");
      await query(out.connections.app, "ALTER ROLE nb_app PASSWORD 'taken-over-by-the-app'");
      const { changes } = await up({ stack });
      expect(changes.join("\n")).to.match(/repaired role nb_app \(password, settings\)/);
      const [r] = await query(out.connections.app, "SELECT current_setting('default_transaction_read_only') AS ro, current_setting('statement_timeout') AS s");
      expect(r).to.deep.equal({ ro: "off", s: `${ROLE_TIMEOUT_DEFAULTS.nb_app.statementMs / 1000}s` });
      await db.withUser(victim, (tx) => tx.query("UPDATE neuralblitz.users SET status = 'active' WHERE id = $1", [victim]));
      expect((await up({ stack })).changes).to.deep.equal([]);
    });
  });

  describe("the platform's locks", function () {
    it("are out of nb_app's reach: no privilege on platform_locks or take_platform_lock", async function () {
      const c = await connected(out.connections.app);
      try {
        expect(await rejection(c.query("SELECT * FROM neuralblitz.platform_locks FOR UPDATE"))).to.match(/permission denied/);
        expect(await rejection(c.query("SELECT neuralblitz.take_platform_lock('deploy', '1 hour')"))).to.match(/permission denied/);
      } finally {
        await c.end();
      }
    });

    it("let up and partition maintenance finish while nb_app holds the old advisory-lock keys", async function () {
      const holder = await connected(out.connections.app);
      try {
        // The keys the deploy, maintenance and the sealer used to take, held in an open transaction on a
        // pooled connection (the pooler's reset would release session-level ones when it ends).
        await holder.query("BEGIN");
        await holder.query(
          `SELECT pg_advisory_xact_lock(${0x6e626462}, 1), pg_advisory_xact_lock(hashtext('neuralblitz.run_partition_maintenance')), pg_advisory_xact_lock(hashtext('neuralblitz.seal_golden_dag'))`,
        );
        const busy = holder.query("SELECT pg_sleep(12)").catch(() => undefined);
        const { changes } = await up({ stack });
        expect(changes).to.deep.equal([]);
        await maintainPartitions(out.connections.migrator);
        const [{ n }] = await query<{ n: number }>(out.connections.admin, "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted");
        expect(n, "nb_app still held the keys while up and maintenance ran").to.equal(3);
        await busy;
      } finally {
        await holder.end().catch(() => undefined);
      }
    });

    it("make a second deploy give up within its bound, naming the deploy that holds the lock", async function () {
      const owner = await connected(out.connections.migrator);
      try {
        await owner.query("SET application_name = 'stuck-deploy'");
        await owner.query("BEGIN; SELECT neuralblitz.take_platform_lock('deploy', '1 second')");
        const pid = (await owner.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
        const msg = await rejection(applyBundles({ url: out.connections.migrator, deployLockTimeoutMs: 1500 }, loadCatalog()));
        expect(msg).to.match(new RegExp(`bundle lock after 2 s: pid ${pid}, role nb_migrator, application 'stuck-deploy', since \\d{4}-`));
        expect(msg).to.include(`SELECT pg_terminate_backend(${pid})`);
      } finally {
        await owner.end();
      }
    });

    it("fail a second job within the bound, naming the session that holds the lock", async function () {
      const owner = await connected(out.connections.migrator);
      try {
        await owner.query("SET application_name = 'stuck-maintenance'");
        await owner.query("BEGIN; SELECT neuralblitz.take_platform_lock('maintenance', '1 second')");
        const pid = (await owner.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
        const msg = await rejection(query(out.connections.migrator, "SELECT neuralblitz.take_platform_lock('maintenance', '1 second')"));
        expect(msg).to.match(new RegExp(`the maintenance lock is still held after 00:00:01: pid ${pid}, role nb_migrator, application 'stuck-maintenance', since \\d{4}-`));
      } finally {
        await owner.end();
      }
    });
  });
});
