// Operations on a real stack: seed, verify (and its psql twin), maintain, and npm start's path.
import { expect } from "chai";
import { ChildProcess, execFile, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { withClient, withTransaction } from "../scripts/db";
import { maintain } from "../scripts/ops/maintain";
import { guardProduction, isSeeded, seed } from "../scripts/ops/seed";
import { start } from "../scripts/ops/start";
import { VERIFY_SQL_FILE } from "../scripts/ops/verifySql";
import { expectedVerifySql, verifySchema } from "../scripts/ops/verify";
import { localContext } from "../scripts/local/context";
import { hasPgCron } from "../scripts/local/postgresNode";
import { status, up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { findBinaries, waitFor } from "../scripts/local/system";
import { query, rejection, uniqueStack } from "./helpers";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");
const AS_OF = new Date("2026-03-15T00:00:00Z");

async function fingerprint(admin: string): Promise<Record<string, string>> {
  const [row] = await query<Record<string, string>>(
    admin,
    `SELECT (SELECT md5(string_agg(id::text || username || status, ',' ORDER BY id)) FROM neuralblitz.users WHERE username LIKE 'seed\\_%') AS users,
            (SELECT md5(string_agg(key_prefix || user_id, ',' ORDER BY key_prefix)) FROM neuralblitz.api_keys) AS api_keys,
            (SELECT md5(string_agg(id::text || state::text || amplitude, ',' ORDER BY id)) FROM neuralblitz.quantum_neurons) AS neurons,
            (SELECT count(*) || ':' || md5(string_agg(ts::text || name || value, ',' ORDER BY ts, name)) FROM neuralblitz.metrics WHERE source LIKE 'seed-%') AS metrics,
            (SELECT count(*)::text FROM neuralblitz.consciousness_snapshots) AS snapshots,
            (SELECT count(*)::text FROM neuralblitz.monitoring_alerts) AS alerts`,
  );
  return row;
}

function psqlVerify(url: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(path.join(findBinaries().pgBinDir, "psql"), [url, "-X", "-f", VERIFY_SQL_FILE], (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code) : 0, out: stdout + stderr }),
    );
  });
}

describe("operations", function () {
  const stack = uniqueStack("ops");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
  });

  describe("seed", function () {
    it("is deterministic for a seed and day, and replaces rather than duplicates", async function () {
      await seed({ stack, scale: 0.25, seed: 7, asOf: AS_OF, progressTo: null });
      const first = await fingerprint(out.connections.admin);
      expect(Number(first.metrics.split(":")[0])).to.be.greaterThan(1000);
      expect(isSeeded(stack)).to.equal(true);
      await seed({ stack, scale: 0.25, seed: 7, asOf: AS_OF, progressTo: null });
      expect(await fingerprint(out.connections.admin)).to.deep.equal(first);
      await seed({ stack, scale: 0.25, seed: 8, asOf: AS_OF, progressTo: null });
      const other = await fingerprint(out.connections.admin);
      expect(other.users).to.not.equal(first.users);
      expect(other.metrics.split(":")[0]).to.equal(first.metrics.split(":")[0]);
    });

    it("fills every table, with ciphertext emails and an intact audit chain", async function () {
      const counts = await query<{ t: string; n: number }>(
        out.connections.admin,
        `SELECT t, (xpath('/row/n/text()', query_to_xml('SELECT count(*) AS n FROM neuralblitz.' || t, false, true, '')))[1]::text::int AS n
           FROM unnest(ARRAY['users','api_keys','partner_configs','quantum_neurons','quantum_neuron_history','reality_networks','reality_nodes',
                             'consciousness_records','consciousness_snapshots','golden_dag_audit','metrics','monitoring_alerts']) AS t`,
      );
      for (const c of counts) expect(c.n, c.t).to.be.greaterThan(0);
      const [plain] = await query<{ n: string }>(out.connections.admin, "SELECT count(*) AS n FROM neuralblitz.users WHERE position(convert_to('@example.com', 'UTF8') IN email_encrypted) > 0");
      expect(plain.n).to.equal("0");
      expect(await query(out.connections.auditor, "SELECT * FROM neuralblitz.verify_golden_dag()")).to.deep.equal([]);
      const [strays] = await query<{ n: string }>(out.connections.admin, "SELECT count(*) AS n FROM neuralblitz.metrics_default");
      expect(strays.n).to.equal("0");
    });

    it("recovers from being killed halfway: the next run leaves exactly one full data set", async function () {
      const clean = await fingerprint(out.connections.admin);
      const child: ChildProcess = spawn(process.execPath, [BIN, "seed", "--stack", stack, "--scale", "3", "--seed", "8", "--as-of", "2026-03-15"], {
        env: process.env,
        stdio: "ignore",
      });
      // The metrics load beside the business tables, one day (10,714 rows at scale 3) per transaction,
      // after the previous seed's 12,502 are deleted: once whole days of this run are committed, and
      // before the last of its 14, the run is halfway.
      await waitFor("the seed to be loading metrics", 60_000, async () => {
        const [r] = await query<{ n: string }>(out.connections.admin, "SELECT count(*) AS n FROM neuralblitz.metrics WHERE source LIKE 'seed-%'");
        const days = Number(r.n) / 10_714;
        return Number.isInteger(days) && days >= 1 && days < 14 ? true : undefined;
      });
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      expect(isSeeded(stack)).to.equal(false);
      await seed({ stack, scale: 0.25, seed: 8, asOf: AS_OF, progressTo: null });
      expect(await fingerprint(out.connections.admin)).to.deep.equal(clean);
    });

    it("loads the business tables and the metrics at the same time, on two connections of nb_migrator", async function () {
      const running = seed({ stack, scale: 3, seed: 9, asOf: AS_OF, progressTo: null });
      const both = await waitFor("both loads to be running", 60_000, async () => {
        const sessions = await query<{ application_name: string; usename: string }>(
          out.connections.admin,
          "SELECT application_name, usename FROM pg_stat_activity WHERE application_name IN ('nbdb-seed', 'nbdb-seed-metrics') AND xact_start IS NOT NULL",
        );
        return sessions.length === 2 ? sessions : undefined;
      });
      await running;
      expect(both.map((s) => s.application_name).sort()).to.deep.equal(["nbdb-seed", "nbdb-seed-metrics"]);
      expect(both.map((s) => s.usename)).to.deep.equal(["nb_migrator", "nb_migrator"]);
      await seed({ stack, scale: 0.25, seed: 8, asOf: AS_OF, progressTo: null });
    });

    it("refuses a stack marked as production unless named exactly", function () {
      expect(() => guardProduction("prod")).to.throw(/marked as production.*--production-stack prod/s);
      expect(() => guardProduction("prod", "prod")).to.not.throw();
      expect(() => guardProduction("dev")).to.not.throw();
    });
  });

  describe("verify", function () {
    it("keeps sql/verify_schema.sql in step with sql/ and the privilege model", async function () {
      const fresh = (await up({ stack: uniqueStack("verifyref"), replicas: 0 })).outputs;
      const expected = await expectedVerifySql(fresh.connections.migrator);
      expect(fs.readFileSync(VERIFY_SQL_FILE, "utf8") === expected, "sql/verify_schema.sql is stale: run npx nbdb verify --regenerate").to.equal(true);
    });

    it("finds no drift on an untouched stack, by nbdb and by psql alike", async function () {
      expect(await verifySchema(out.connections.migrator)).to.deep.equal([]);
      const viaPsql = await psqlVerify(out.connections.migrator);
      expect(viaPsql.code, viaPsql.out).to.equal(0);
      expect(viaPsql.out).to.include("schema verified: no drift");
    });

    it("reports exactly each drift it is shown, with what to do, by nbdb and by psql alike", async function () {
      const owner = new Client({ connectionString: out.connections.migrator });
      await owner.connect();
      const tomorrow = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10).replace(/-/g, "");
      try {
        await owner.query("SET ROLE nb_owner");
        await owner.query("DROP INDEX neuralblitz.reality_nodes_unhealthy_idx");
        await owner.query("GRANT SELECT ON neuralblitz.users TO nb_auditor");
        await owner.query("ALTER TABLE neuralblitz.api_keys DISABLE ROW LEVEL SECURITY");
        await owner.query(
          `CREATE OR REPLACE VIEW neuralblitz.reality_status_view WITH (security_invoker = true) AS
           SELECT n.id AS network_id, n.user_id, n.name, n.status, n.dimensions, 0::bigint AS nodes, 0::bigint AS nodes_online,
                  0::bigint AS nodes_unhealthy, 0::numeric AS avg_health, now() AS last_heartbeat FROM neuralblitz.reality_networks n`,
        );
        await owner.query(`DROP TABLE neuralblitz.metrics_p${tomorrow}`);
      } finally {
        await owner.end();
      }
      await query(out.connections.admin, "UPDATE neuralblitz.bundle_ledger SET checksum = repeat('0', 64) WHERE name = 'V012__consciousness_records'");

      const drifts = await verifySchema(out.connections.migrator);
      expect(drifts.map((d) => `${d.kind}|${d.name}|${d.problem}`)).to.have.members([
        "index|reality_nodes_unhealthy_idx|missing",
        "grant|nb_auditor SELECT on table users|extra",
        "row level security|api_keys|changed",
        "view definition|reality_status_view|changed",
        `partition ahead|metrics_p${tomorrow}|missing`,
        "ledger|V012__consciousness_records|changed",
      ]);
      const fix = Object.fromEntries(drifts.map((d) => [d.kind, d.fix]));
      expect(fix.index).to.match(/^recreate it: CREATE INDEX reality_nodes_unhealthy_idx ON neuralblitz.reality_nodes/);
      expect(fix.grant).to.match(/^REVOKE SELECT ON TABLE neuralblitz.users FROM nb_auditor/);
      expect(fix["row level security"]).to.equal("ALTER TABLE neuralblitz.api_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY");
      expect(fix["view definition"]).to.match(/sql\/repeatable\/R050__views.sql/);
      expect(fix["partition ahead"]).to.match(/nbdb maintain/);

      const viaPsql = await psqlVerify(out.connections.migrator);
      expect(viaPsql.code).to.equal(3);
      expect(viaPsql.out).to.match(/schema drift: 6 problem\(s\)/);
      for (const d of drifts) expect(viaPsql.out).to.include(d.name);

      const cli = await new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [BIN, "verify", "--stack", stack, "--json"], (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout })),
      );
      expect(cli.code).to.equal(1);
      expect(JSON.parse(cli.stdout).drifts).to.have.length(6);
    });
  });
});

describe("audit archiving", function () {
  it("archives a partition of the trail, and verification goes on from its recorded last entry", async function () {
    const out = (await up({ stack: uniqueStack("archive"), replicas: 0 })).outputs;
    const write = (label: string) =>
      query(out.connections.admin, `INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ($1, 'm', '>', 1, 'info')`, [label]);
    await write("before-archive");
    const month = new Date().toISOString().slice(0, 7).replace("-", "");
    const [archive] = await query<{ partition_name: string; entries: string }>(
      out.connections.migrator,
      `SELECT partition_name, entries FROM neuralblitz.archive_golden_dag_partition('golden_dag_audit_p${month}')`,
    );
    expect(archive.partition_name).to.equal(`golden_dag_audit_p${month}`);
    expect(Number(archive.entries)).to.be.greaterThan(0);
    await write("after-archive");
    expect(await query(out.connections.auditor, "SELECT * FROM neuralblitz.verify_golden_dag()")).to.deep.equal([]);
    // Their seals stay: an archived entry counts as gone only if its archive record goes too.
    // (Only a superuser skipping triggers can.)
    await query(out.connections.admin, "SET session_replication_role = replica; DELETE FROM neuralblitz.golden_dag_archives");
    const broken = await query<{ reason: string }>(out.connections.auditor, "SELECT reason FROM neuralblitz.verify_golden_dag()");
    expect(broken).to.have.length(Number(archive.entries));
    for (const b of broken) expect(b.reason).to.match(/^missing: sealed into the chain, but gone from the trail/);
  });
});

describe("maintenance", function () {
  const stack = uniqueStack("maint");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
  });

  it("moves strays out of default partitions, records the run, and changes nothing the second time", async function () {
    await query(out.connections.admin, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES ('2031-02-03 04:05+00', 'stray', 1, 'test')");
    const first = await maintain(out.connections.migrator);
    expect(first.partitionsCreated).to.equal(1);
    expect(first.rowsMoved).to.equal(1);
    const second = await maintain(out.connections.migrator);
    expect([second.partitionsCreated, second.partitionsRetired, second.rowsMoved]).to.deep.equal([0, 0, 0]);
    const runs = await query<{ source: string }>(out.connections.admin, "SELECT source FROM neuralblitz.maintenance_runs ORDER BY id DESC LIMIT 2");
    expect(runs.map((r) => r.source)).to.deep.equal(["nbdb", "nbdb"]);
  });

  it("is scheduled hourly by pg_cron where the server has it, as nb_migrator, whose run works", async function () {
    if (!hasPgCron(localContext(stack, () => undefined))) this.skip();
    const [job] = await query<{ schedule: string; username: string; database: string; command: string }>(
      out.connections.admin,
      "SELECT schedule, username, database, command FROM cron.job WHERE jobname = 'neuralblitz-maintenance'",
    );
    expect(job).to.deep.equal({ schedule: "7 * * * *", username: "nb_migrator", database: "neuralblitz", command: "CALL neuralblitz.run_maintenance_proc('scheduler')" });
    const migrator = new Client({ connectionString: out.connections.migrator });
    await migrator.connect();
    try {
      await migrator.query(job.command);
    } finally {
      await migrator.end();
    }
    expect((await status(stack)).maintenance).to.deep.include({ scheduled: true });
    expect((await status(stack)).maintenance!.lastRun!.source).to.equal("scheduler");
  });

  it("reports a bloated index with the REINDEX CONCURRENTLY it would run, and runs it on request", async function () {
    const day = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
    await query(
      out.connections.admin,
      `INSERT INTO neuralblitz.metrics (ts, name, value, source)
       SELECT '${day}'::timestamptz + i * interval '100 ms', 'bloat.m' || (i % 50), i, 'test' FROM generate_series(1, 200000) AS i`,
    );
    await query(out.connections.admin, "DELETE FROM neuralblitz.metrics WHERE name = 'bloat.m1' OR (source = 'test' AND value::bigint % 10 <> 0)");
    await query(out.connections.admin, "VACUUM ANALYZE neuralblitz.metrics");
    const report = await maintain(out.connections.migrator);
    const target = report.bloated.find((b) => b.index.includes("name_ts_idx"));
    expect(target, JSON.stringify(report.bloated)).to.not.equal(undefined);
    expect(target!.reindex).to.equal(`REINDEX INDEX CONCURRENTLY ${target!.index}`);
    const fixed = await maintain(out.connections.migrator, { reindex: true });
    expect(fixed.reindexed).to.include(target!.index);
    const after = await maintain(out.connections.migrator);
    expect(after.bloated.map((b) => b.index)).to.not.include(target!.index);
  });

  it("killed mid-run, leaves each partition made with its rows or not at all, and the next run completes", async function () {
    await query(out.connections.admin, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES ('2032-07-08 00:00+00', 'stray', 1, 'test')");
    const blocker = new Client({ connectionString: out.connections.admin });
    await blocker.connect();
    await blocker.query("BEGIN");
    // Maintenance locks every policy table in turn; hold the last one so it stops halfway.
    await blocker.query("LOCK TABLE neuralblitz.quantum_neuron_history_default IN ACCESS EXCLUSIVE MODE");
    const child = spawn(process.execPath, [BIN, "maintain", "--stack", stack], { env: process.env, stdio: "ignore" });
    await waitFor("maintenance to wait on the lock", 30_000, async () => {
      const r = await query(out.connections.admin, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'nbdb-maintain' AND wait_event_type = 'Lock'");
      return r.length ? true : undefined;
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    await waitFor("the killed run's backend to go", 15_000, async () =>
      (await query(out.connections.admin, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'nbdb-maintain'")).length === 0 ? true : undefined,
    );
    await blocker.query("ROLLBACK");
    await blocker.end();
    // Each partition action commits on its own (so no writer waits behind a long transaction):
    // the stray's partition exists with the row moved into it, or not at all with the row in default.
    const [{ p }] = await query<{ p: string | null }>(out.connections.admin, "SELECT to_regclass('neuralblitz.metrics_p20320708')::text AS p");
    const [{ n }] = await query<{ n: string }>(out.connections.admin, "SELECT count(*) AS n FROM neuralblitz.metrics_default");
    expect(n).to.equal(p ? "0" : "1");
    const rerun = await maintain(out.connections.migrator);
    expect(rerun.rowsMoved).to.equal(p ? 0 : 1);
    expect(await query(out.connections.admin, "SELECT count(*)::int AS n FROM neuralblitz.metrics_p20320708 WHERE name = 'stray'")).to.deep.equal([{ n: 1 }]);
  });

  describe("withClient and withTransaction (scripts/db.ts), which every command connects with", function () {
    const probe = "public.nbdb_tx_probe";
    const exists = async (): Promise<boolean> => (await query<{ r: string | null }>(out.connections.admin, `SELECT to_regclass('${probe}') AS r`))[0].r !== null;
    const sessions = async (app: string): Promise<number> =>
      (await query<{ n: number }>(out.connections.admin, "SELECT count(*)::int AS n FROM pg_catalog.pg_stat_activity WHERE application_name = $1", [app]))[0].n;
    afterEach(() => query(out.connections.admin, `DROP TABLE IF EXISTS ${probe}`));

    it("commits what the function did when it returns, and ends the connection", async function () {
      const made = await withClient(out.connections.admin, (c) => withTransaction(c, async () => {
          await c.query(`CREATE TABLE ${probe} (x int)`);
          return "made";
        }), "nbdb-tx-test");
      expect(made).to.equal("made");
      expect(await exists()).to.equal(true);
      expect(await sessions("nbdb-tx-test")).to.equal(0);
    });

    it("rolls back and rethrows when the function throws, leaving the connection usable; ends it even then", async function () {
      const after = await withClient(
        out.connections.admin,
        async (c) => {
          const message = await rejection(withTransaction(c, async () => {
            await c.query(`CREATE TABLE ${probe} (x int)`);
            await c.query("SELECT 1/0");
          }));
          expect(message).to.equal("division by zero");
          return (await c.query("SELECT 'usable' AS s")).rows[0].s;
        },
        "nbdb-tx-test",
      );
      expect(after).to.equal("usable");
      expect(await exists()).to.equal(false);
      expect(await rejection(withClient(out.connections.admin, () => Promise.reject(new Error("stop")), "nbdb-tx-test"))).to.equal("stop");
      expect(await sessions("nbdb-tx-test")).to.equal(0);
    });

    it("rolls back a successful function when asked (a check), and passes the mode to BEGIN", async function () {
      await withClient(out.connections.admin, (c) => withTransaction(c, () => c.query(`CREATE TABLE ${probe} (x int)`), { rollback: true }));
      expect(await exists()).to.equal(false);
      const refused = await withClient(out.connections.admin, (c) => withTransaction(c, () => c.query(`CREATE TABLE ${probe} (x int)`), { mode: "READ ONLY" }).catch((e: { code?: string }) => e.code));
      expect(refused).to.equal("25006"); // read_only_sql_transaction
      expect(await exists()).to.equal(false);
    });

    it("rejects a refused login with the server's error", async function () {
      const url = new URL(out.connections.migrator);
      url.password = "not-the-password";
      const code = await withClient(url.toString(), async () => "connected").catch((e: { code?: string }) => e.code);
      expect(code).to.equal("28P01"); // invalid_password
    });
  });
});

describe("npm start", function () {
  it("brings a stack up, seeds it once, verifies it and summarizes it", async function () {
    const stack = uniqueStack("start");
    await up({ stack, replicas: 1 });
    const first = await start(stack, () => undefined, null);
    expect(first.seeded).to.equal(true);
    expect(first.drifts).to.deep.equal([]);
    expect(first.audit.broken).to.deep.equal([]);
    expect(first.rowCounts.metrics).to.be.greaterThan(10_000);
    expect(first.status.nodes.map((n) => [n.node, n.running])).to.deep.equal([
      ["primary", true],
      ["replica-0", true],
    ]);
    const again = await start(stack, () => undefined, null);
    expect(again.seeded).to.equal(false);
    expect(again.changes).to.deep.equal([]);
    expect(again.rowCounts).to.deep.equal(first.rowCounts);
  });
});
