// Recovery without manual repair (issue 16): every state a crash or a fault leaves, and `nbdb up`
// healing it in one run; status that does not lie. Real servers on free ports.
import { expect } from "chai";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { applyBundles } from "../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../infra/bundles/catalog";
import { maintain } from "../scripts/ops/maintain";
import { status, up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { sleep } from "../scripts/local/system";
import { query, rejection, uniqueStack } from "./helpers";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");

function nbdb(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: process.env }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function onPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

// Small WAL limits, so that a replica loses its slot after some 100 MB of WAL instead of 8 GB.
const SMALL_WAL = { max_slot_wal_keep_size: "48MB", wal_keep_size: "0", max_wal_size: "64MB", min_wal_size: "32MB" };

async function walBytes(admin: string): Promise<number> {
  const [r] = await query<{ b: string }>(admin, "SELECT sum(size)::bigint AS b FROM pg_ls_waldir()");
  return Number(r.b);
}

describe("recovery: a replica that stops reading", function () {
  const stack = uniqueStack("frozen");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 1, bundles: false, settings: SMALL_WAL })).outputs;
  });

  it("never holds the primary hostage: the slot is given up, pg_wal stays bounded, and up rebuilds the replica", async function () {
    this.timeout(600_000);
    const admin = out.connections.admin;
    const replicaAdmin = onPort(admin, out.replicas[0].port);
    const [{ pid: receiver }] = await query<{ pid: number }>(replicaAdmin, "SELECT pid FROM pg_stat_wal_receiver");
    process.kill(receiver, "SIGSTOP");
    try {
      await query(admin, "CREATE TABLE public.ballast (id int, pad text)");
      const started = Date.now();
      // About 400 MB of WAL, eight times the slot's limit; each round checkpoints, as a busy primary would.
      for (let i = 0; i < 16; i++) {
        await query(admin, "INSERT INTO public.ballast SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g");
        await query(admin, "TRUNCATE public.ballast");
        const c = new Client({ connectionString: admin });
        await c.connect();
        await c.query("SET statement_timeout = '120s'");
        await c.query("CHECKPOINT");
        await c.end();
      }
      console.log(`      wrote WAL and checkpointed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const [slot] = await query<{ wal_status: string; active: boolean }>(admin, "SELECT wal_status, active FROM pg_replication_slots WHERE slot_name = 'replica_0'");
      console.log(`      slot: ${JSON.stringify(slot)}, pg_wal ${(await walBytes(admin)) / 1048576} MB`);
      expect(slot.wal_status).to.equal("lost");
      // The limit plus max_wal_size and a margin; without the limit it grows with every round.
      expect(await walBytes(admin)).to.be.below(200 * 1024 * 1024);
      const s = await status(stack);
      expect(s.nodes[1].streaming).to.equal(false);
      expect(s.problems.join("\n")).to.match(/replica-0 is not streaming/);
      const cli = await nbdb(["status", "--stack", stack, "--json"]);
      expect(cli.code).to.equal(1);
    } finally {
      process.kill(receiver, "SIGCONT");
    }
    const res = await up({ stack, bundles: false });
    expect(res.changes).to.include("re-bootstrapped replica-0 (slot lost)");
    expect((await status(stack)).problems).to.deep.equal([]);
    expect((await nbdb(["status", "--stack", stack])).code).to.equal(0);
  });
});

/**
 * Writers that insert one row per transaction into `table` until stopped, each on its own
 * connection; reports the longest any single insert waited, and how many committed.
 */
function writers(url: string, insert: string, n = 4) {
  let stop = false;
  let worstMs = 0;
  let commits = 0;
  const done = Promise.all(
    Array.from({ length: n }, async () => {
      const c = new Client({ connectionString: url, application_name: "test-writer" });
      await c.connect();
      try {
        while (!stop) {
          const t = performance.now();
          await c.query(insert);
          worstMs = Math.max(worstMs, performance.now() - t);
          commits++;
          await sleep(5);
        }
      } finally {
        await c.end();
      }
    }),
  );
  return {
    async stop(): Promise<{ worstMs: number; commits: number }> {
      stop = true;
      await done;
      return { worstMs, commits };
    },
  };
}

/** A session that reads `table` in a transaction left open: it holds ACCESS SHARE until released. */
async function reader(url: string, table: string): Promise<{ pid: number; release(): Promise<void> }> {
  const c = new Client({ connectionString: url, application_name: "long-reader" });
  await c.connect();
  await c.query("BEGIN");
  const [{ pid }] = (await c.query(`SELECT pg_backend_pid() AS pid, count(*) FROM ${table}`)).rows;
  return {
    pid,
    async release() {
      await c.query("COMMIT").catch(() => undefined);
      await c.end();
    },
  };
}

describe("recovery: maintenance and migrations never stall the application", function () {
  const stack = uniqueStack("stall");
  let out: LocalStackOutputs;
  // Writers' worst wait: a generous bound on what the application must never see (goal 1 s).
  const BOUND_MS = 1000;

  before(async function () {
    this.timeout(600_000);
    out = (await up({ stack, replicas: 0 })).outputs;
  });

  it("maintain creates partitions in short transactions: writers wait < 1 s, even behind a long read", async function () {
    this.timeout(300_000);
    const admin = out.connections.admin;
    // The newest premade partitions are gone: maintain has partitions to create.
    const parts = await query<{ name: string }>(
      admin,
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('neuralblitz.metrics'::regclass, 'neuralblitz.quantum_neuron_history'::regclass)
          AND c.relname NOT LIKE '%default' ORDER BY c.relname DESC`,
    );
    const metricsParts = parts.filter((p) => p.name.startsWith("metrics_p")).slice(0, 2);
    for (const p of metricsParts) await query(admin, `DROP TABLE neuralblitz.${p.name}`);
    const w = writers(admin, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), 'test.stall', 1, 'test')");
    await sleep(300);
    // An auditor-like read of the parent, open for 3 s: a creation must not queue writers behind it.
    const r = await reader(admin, "neuralblitz.metrics");
    const maintaining = maintain(out.connections.migrator);
    await sleep(3000);
    await r.release();
    const report = await maintaining;
    await sleep(300);
    const { worstMs, commits } = await w.stop();
    console.log(`      writers: ${commits} commits, worst wait ${worstMs.toFixed(0)} ms; partitions created ${report.partitionsCreated}`);
    expect(report.partitionsCreated).to.be.at.least(metricsParts.length);
    for (const p of metricsParts) expect(await query(admin, "SELECT to_regclass($1) AS t", [`neuralblitz.${p.name}`])).to.deep.equal([{ t: `neuralblitz.${p.name}` }]);
    expect(commits).to.be.above(0);
    expect(worstMs).to.be.below(BOUND_MS);
    const [run] = await query<{ partitions_created: number }>(admin, "SELECT partitions_created FROM neuralblitz.maintenance_runs ORDER BY id DESC LIMIT 1");
    expect(run.partitions_created).to.equal(report.partitionsCreated);
  });

  it("the scheduled procedure does the same: partitions in their own transactions, then the run recorded", async function () {
    const admin = out.connections.admin;
    const [last] = await query<{ name: string }>(
      admin,
      "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'neuralblitz.metrics'::regclass AND c.relname <> 'metrics_default' ORDER BY 1 DESC LIMIT 1",
    );
    await query(admin, `DROP TABLE neuralblitz.${last.name}`);
    const w = writers(admin, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), 'test.stall', 1, 'test')");
    const r = await reader(admin, "neuralblitz.metrics");
    const calling = query(out.connections.migrator, "CALL neuralblitz.run_maintenance_proc('scheduler')");
    await sleep(2000);
    await r.release();
    await calling;
    const { worstMs } = await w.stop();
    expect(worstMs).to.be.below(BOUND_MS);
    expect(await query(admin, "SELECT to_regclass($1)::text AS t", [`neuralblitz.${last.name}`])).to.deep.equal([{ t: `neuralblitz.${last.name}` }]);
    const [run] = await query<{ source: string; partitions_created: number }>(admin, "SELECT source, partitions_created FROM neuralblitz.maintenance_runs ORDER BY id DESC LIMIT 1");
    expect(run).to.deep.equal({ source: "scheduler", partitions_created: 1 });
  });

  function bundleDirWith(name: string, sql: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-bundles-"));
    fs.cpSync(REPO_BUNDLE_DIR, dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "migrations", name), sql);
    return dir;
  }

  it("a migration behind an application's lock tries in short waits: writers wait < 1 s, and it applies once the lock is free", async function () {
    const admin = out.connections.admin;
    await query(admin, "CREATE TABLE neuralblitz.lock_probe (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int); ALTER TABLE neuralblitz.lock_probe OWNER TO nb_owner");
    const dir = bundleDirWith("V900__probe_note.sql", "-- Test: a column on a table the application holds.\nALTER TABLE neuralblitz.lock_probe ADD COLUMN note text;\n");
    const w = writers(admin, "INSERT INTO neuralblitz.lock_probe (v) VALUES (1)");
    await sleep(300);
    const r = await reader(admin, "neuralblitz.lock_probe");
    const applying = applyBundles({ url: out.connections.migrator, objectLockTimeout: "30s" }, loadCatalog(dir));
    await sleep(3000);
    await r.release();
    const applied = await applying;
    await sleep(300);
    const { worstMs, commits } = await w.stop();
    console.log(`      writers: ${commits} commits, worst wait ${worstMs.toFixed(0)} ms`);
    expect(applied.map((a) => a.name)).to.deep.equal(["V900__probe_note"]);
    expect(await query(admin, "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'lock_probe' AND column_name = 'note'")).to.deep.equal([{ n: 1 }]);
    expect(worstMs).to.be.below(BOUND_MS);
  });

  it("gives up at the deploy's limit naming the session that holds the lock, without blaming the file", async function () {
    const admin = out.connections.admin;
    const dir = bundleDirWith("V901__probe_more.sql", "-- Test: another column.\nALTER TABLE neuralblitz.lock_probe ADD COLUMN more text;\n");
    const r = await reader(admin, "neuralblitz.lock_probe");
    try {
      const message = await rejection(applyBundles({ url: out.connections.migrator, objectLockTimeout: "2s" }, loadCatalog(dir)));
      expect(message).to.include("V901__probe_more.sql");
      expect(message).to.include(`pid ${r.pid}`).and.include("long-reader");
      expect(message).to.include(`pg_terminate_backend(${r.pid})`);
      expect(message).to.match(/not at fault/);
      expect(message).not.to.match(/fix the file/i);
    } finally {
      await r.release();
    }
    expect(await query(admin, "SELECT count(*)::int AS n FROM neuralblitz.bundle_ledger WHERE name = 'V901__probe_more'")).to.deep.equal([{ n: 0 }]);
  });
});
