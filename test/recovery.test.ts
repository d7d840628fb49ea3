// Recovery without manual repair (issue 16): every state a crash or a fault leaves, and `nbdb up`
// healing it in one run; status that does not lie. Real servers on free ports.
import { expect } from "chai";
import { ChildProcess, execFile, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { NeuralBlitzDb } from "../client";
import { applyBundles } from "../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../infra/bundles/catalog";
import { maintain } from "../scripts/ops/maintain";
import { down, status, up } from "../scripts/local/stack";
import { LocalStackOutputs, caFile, newKeptPort, stackDir } from "../scripts/local/state";
import { ephemeralPortRange, findBinaries, processAlive, processesUsing, sleep, waitFor } from "../scripts/local/system";
import { STALL_GOAL_MS, holdRead, startWriters } from "../scripts/bench/writeStall";
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

describe("recovery: maintenance and migrations never stall the application", function () {
  const stack = uniqueStack("stall");
  let out: LocalStackOutputs;
  // Writers' worst wait: a generous bound on what the application must never see.
  const BOUND_MS = STALL_GOAL_MS;

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
    const w = startWriters(admin, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), 'test.stall', 1, 'test')");
    await sleep(300);
    // An auditor-like read of the parent, open for 3 s: a creation must not queue writers behind it.
    const r = await holdRead(admin, "neuralblitz.metrics");
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
    const w = startWriters(admin, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), 'test.stall', 1, 'test')");
    const r = await holdRead(admin, "neuralblitz.metrics");
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
    const w = startWriters(admin, "INSERT INTO neuralblitz.lock_probe (v) VALUES (1)");
    await sleep(300);
    const r = await holdRead(admin, "neuralblitz.lock_probe");
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
    const r = await holdRead(admin, "neuralblitz.lock_probe");
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

async function startTime(url: string): Promise<string> {
  const [row] = await query<{ t: string }>(url, "SELECT pg_postmaster_start_time()::text AS t");
  return row.t;
}

describe("recovery: lost and damaged files", function () {
  const stack = uniqueStack("files");
  let out: LocalStackOutputs;
  let dir: string;

  before(async function () {
    out = (await up({ stack, replicas: 1, bundles: false })).outputs;
    dir = stackDir(stack);
  });

  it("restores a missing or truncated state.json from its copy, changing nothing that runs", async function () {
    const started = await startTime(out.connections.admin);
    const conf = fs.readFileSync(path.join(dir, "primary", "nbdb.conf"), "utf8");
    fs.rmSync(path.join(dir, "state.json"));
    let res = await up({ stack, bundles: false });
    expect(res.changes).to.deep.equal(["restored state.json from .state.backup.json"]);
    expect(res.outputs).to.deep.equal(out);
    fs.writeFileSync(path.join(dir, "state.json"), fs.readFileSync(path.join(dir, "state.json"), "utf8").slice(0, 40));
    res = await up({ stack, bundles: false });
    expect(res.changes).to.deep.equal(["restored state.json from .state.backup.json"]);
    expect(res.outputs).to.deep.equal(out);
    expect(await startTime(out.connections.admin)).to.equal(started);
    expect(fs.readFileSync(path.join(dir, "primary", "nbdb.conf"), "utf8")).to.equal(conf);
  });

  it("refuses to set up a running stack as new when state.json and its copy are both gone, and says how to recover", async function () {
    const started = await startTime(out.connections.admin);
    const conf = fs.readFileSync(path.join(dir, "primary", "nbdb.conf"), "utf8");
    const keep = fs.readFileSync(path.join(dir, "state.json"));
    fs.rmSync(path.join(dir, "state.json"));
    fs.rmSync(path.join(dir, ".state.backup.json"));
    try {
      const message = await rejection(up({ stack, bundles: false }));
      expect(message).to.include("no state.json").and.include("data key").and.include("--purge --yes");
      expect(fs.existsSync(path.join(dir, "state.json"))).to.equal(false);
      expect(fs.readFileSync(path.join(dir, "primary", "nbdb.conf"), "utf8")).to.equal(conf);
      expect(await startTime(out.connections.admin)).to.equal(started);
    } finally {
      fs.writeFileSync(path.join(dir, "state.json"), keep, { mode: 0o600 });
    }
    expect((await up({ stack, bundles: false })).outputs).to.deep.equal(out);
    // The copy is written again, so the next loss is recoverable too.
    expect(fs.readFileSync(path.join(dir, ".state.backup.json"))).to.deep.equal(keep);
  });

  it("with state.json damaged and no copy, up refuses naming the file, and down still stops every server", async function () {
    const keep = fs.readFileSync(path.join(dir, "state.json"));
    const pids = (await status(stack)).nodes.map((n) => n.pid!);
    fs.writeFileSync(path.join(dir, "state.json"), "{\"version\": 1, \"sta");
    fs.rmSync(path.join(dir, ".state.backup.json"));
    try {
      const message = await rejection(up({ stack, bundles: false }));
      expect(message).to.include(path.join(dir, "state.json")).and.include("damaged");
      await down({ stack });
      for (const pid of pids) expect(processAlive(pid, "postgres")).to.equal(false);
      expect(processesUsing(dir)).to.deep.equal([]);
    } finally {
      fs.writeFileSync(path.join(dir, "state.json"), keep, { mode: 0o600 });
    }
    const res = await up({ stack, bundles: false });
    expect(res.changes).to.include("started the primary");
    expect(res.outputs).to.deep.equal(out);
  });

  it("names outputs.json and the fix when it is missing, damaged or a directory; up rewrites it", async function () {
    const file = path.join(dir, "outputs.json");
    fs.rmSync(file);
    expect((await nbdb(["plan", "--stack", stack])).stderr).to.include(file).and.include(`npx nbdb up --stack ${stack}`);
    expect((await up({ stack, bundles: false })).changes).to.deep.equal(["wrote outputs.json"]);
    fs.writeFileSync(file, '{"stack": "x", \u0001');
    const damaged = await nbdb(["plan", "--stack", stack]);
    expect(damaged.code).to.equal(2);
    expect(damaged.stderr).to.include(file).and.include("not valid JSON").and.include(`npx nbdb up --stack ${stack}`);
    expect((await up({ stack, bundles: false })).changes).to.deep.equal(["wrote outputs.json"]);
    fs.rmSync(file);
    fs.mkdirSync(file);
    expect((await nbdb(["plan", "--stack", stack])).stderr).to.include(file).and.include("is a directory").and.include("mv ");
    expect(await rejection(up({ stack, bundles: false }))).to.include(file).and.include("is a directory");
    fs.rmdirSync(file);
    expect((await up({ stack, bundles: false })).outputs).to.deep.equal(out);
  });

  it("finds servers without postmaster.pid: status does not lie, up restarts them cleanly", async function () {
    const before = await status(stack);
    fs.rmSync(path.join(dir, "primary", "postmaster.pid"));
    fs.rmSync(path.join(dir, "replica-0", "postmaster.pid"));
    const s = await status(stack);
    expect(s.nodes.map((n) => [n.node, n.pid, n.running])).to.deep.equal(before.nodes.map((n) => [n.node, n.pid, true]));
    expect(s.problems.join("\n")).to.include("the primary runs without its postmaster.pid");
    expect((await nbdb(["status", "--stack", stack])).code).to.equal(1);
    const res = await up({ stack, bundles: false });
    expect(res.changes).to.include("restarted the primary (its postmaster.pid was gone)");
    const after = await status(stack);
    expect(after.problems).to.deep.equal([]);
    expect(after.nodes[0].pid).not.to.equal(before.nodes[0].pid);
  });

  it("up --bundles DIR applies the bundles of that directory, like plan", async function () {
    const bundles = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-bundles-"));
    fs.mkdirSync(path.join(bundles, "migrations"));
    fs.mkdirSync(path.join(bundles, "repeatable"));
    fs.copyFileSync(path.join(REPO_BUNDLE_DIR, "migrations", "V001__bundle_ledger.sql"), path.join(bundles, "migrations", "V001__bundle_ledger.sql"));
    const res = await nbdb(["up", "--stack", stack, "--bundles", bundles]);
    expect(res.code, res.stderr).to.equal(0);
    expect(res.stderr).to.include("V001__bundle_ledger.sql");
    expect(await query(out.connections.admin, "SELECT name FROM neuralblitz.bundle_ledger")).to.deep.equal([{ name: "V001__bundle_ledger" }]);
    const plan = await nbdb(["plan", "--stack", stack, "--bundles", bundles]);
    expect(plan.stdout).to.include("nbdb up would apply nothing");
  });

  it("down --purge --yes stops servers that lost their pid files before it deletes, and never deletes under a running process", async function () {
    const pids = (await status(stack)).nodes.map((n) => n.pid!);
    fs.rmSync(path.join(dir, "primary", "postmaster.pid"));
    // Something else working in the data directory, that down does not own.
    const squatter = execFile("sleep", ["120"], { cwd: path.join(dir, "primary") });
    try {
      await waitForPid(squatter);
      const message = await rejection(down({ stack, purge: true, yes: true }));
      expect(message).to.include(`pid ${squatter.pid}`).and.include("Nothing was deleted");
      expect(fs.existsSync(path.join(dir, "primary", "PG_VERSION"))).to.equal(true);
      for (const pid of pids) expect(processAlive(pid, "postgres")).to.equal(false);
    } finally {
      squatter.kill("SIGKILL");
      await new Promise((r) => squatter.once("exit", r));
    }
    await down({ stack, purge: true, yes: true });
    expect(fs.existsSync(dir)).to.equal(false);
  });
});

async function waitForPid(child: ChildProcess): Promise<void> {
  await waitFor("the child to start", 10_000, async () => (child.pid && fs.existsSync(`/proc/${child.pid}/cwd`) ? true : undefined));
}

describe("recovery: ports and the pooler's shutdown", function () {
  const stack = uniqueStack("ports");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 1, bundles: false })).outputs;
  });

  it("keeps every port outside the kernel's ephemeral range, so no outgoing connection can take a stopped server's port", async function () {
    // CI once saw `up` refuse "port … kept for pgbouncer … is in use by another process" after the
    // pooler had stopped: an outgoing connection had been given that port as its local one.
    const [lo, hi] = ephemeralPortRange();
    const ports = [out.primary.port, out.pooler.port, ...out.replicas.map((r) => r.port)];
    for (const port of ports) expect(port < lo || port > hi, `port ${port} is in ${lo}-${hi}`).to.equal(true);
    expect(new Set(ports).size).to.equal(ports.length);
    // And none another stack keeps, even with that stack's servers stopped.
    const other = await newKeptPort();
    expect(ports).not.to.include(other);
    expect(other < lo || other > hi).to.equal(true);
  });

  it("down stops the pooler while a client sits idle on it, and while one holds a transaction open; up serves again", async function () {
    // Since PgBouncer 1.23 SIGTERM waits for every client to leave: down would time out here.
    const idle = new Client({ connectionString: out.connections.app });
    const inTx = new Client({ connectionString: out.connections.app });
    for (const c of [idle, inTx]) c.on("error", () => undefined);
    await idle.connect();
    await inTx.connect();
    await idle.query("SELECT 1");
    await inTx.query("BEGIN");
    await inTx.query("SELECT 1");
    try {
      const pooler = (await status(stack)).pooler.pid!;
      await down({ stack });
      expect(processAlive(pooler, "pgbouncer")).to.equal(false);
      expect(await rejection(inTx.query("SELECT 1"))).to.be.a("string");
    } finally {
      await Promise.all([idle.end().catch(() => undefined), inTx.end().catch(() => undefined)]);
    }
    await up({ stack, bundles: false });
    expect(await query(out.connections.app, "SELECT 1 AS one")).to.deep.equal([{ one: 1 }]);
  });
});

describe("recovery: one stack name in two homes", function () {
  const stack = uniqueStack("twohomes");
  const homeB = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-home-b-"));
  fs.chmodSync(homeB, 0o755);
  const inHome = async <T>(home: string, fn: () => Promise<T>): Promise<T> => {
    const homeA = process.env.NBDB_HOME;
    process.env.NBDB_HOME = home;
    try {
      return await fn();
    } finally {
      process.env.NBDB_HOME = homeA;
    }
  };

  after(async function () {
    await inHome(homeB, () => down({ stack, purge: true, yes: true })).catch(() => undefined);
    fs.rmSync(homeB, { recursive: true, force: true });
  });

  it("starts a stack while a stack of the same name runs from another NBDB_HOME (same process titles), and stops only its own", async function () {
    // The servers' titles (cluster_name nbdb-<stack>-<node>) are the same in both homes: starting
    // the second primary used to wait 30 s for the first one's processes "to exit", then fail.
    const a = (await up({ stack, replicas: 0, bundles: false })).outputs;
    const b = (await inHome(homeB, () => up({ stack, replicas: 0, bundles: false }))).outputs;
    expect(b.primary.port).to.not.equal(a.primary.port);
    const aPid = (await status(stack)).nodes[0].pid!;
    await inHome(homeB, () => down({ stack }));
    expect(processAlive(aPid, "postgres")).to.equal(true);
    expect(await query(a.connections.admin, "SELECT 1 AS one")).to.deep.equal([{ one: 1 }]);
    await inHome(homeB, () => up({ stack, bundles: false }));
    expect(await query(b.connections.admin, "SELECT 1 AS one")).to.deep.equal([{ one: 1 }]);
    await down({ stack, purge: true, yes: true });
  });
});

describe("recovery: servers killed under load", function () {
  const stack = uniqueStack("load");
  let out: LocalStackOutputs;

  before(async function () {
    // With the schema: the client's reads name their user with neuralblitz.set_user_context().
    out = (await up({ stack, replicas: 1 })).outputs;
    await query(out.connections.admin, "CREATE TABLE public.acked (id bigint PRIMARY KEY); GRANT SELECT, INSERT ON public.acked TO nb_app; GRANT SELECT ON public.acked TO nb_readonly");
  });

  /** Writers through the pooler that note every commit the server acknowledged, and carry on through errors. */
  function ackingWriters(n = 3) {
    let stop = false;
    const acked: number[] = [];
    let errors = 0;
    const done = Promise.all(
      Array.from({ length: n }, async (_, w) => {
        let seq = 0;
        let c: Client | undefined;
        while (!stop) {
          const id = w * 10_000_000 + seq++;
          try {
            if (!c) {
              c = new Client({ connectionString: out.connections.app, connectionTimeoutMillis: 2000 });
              c.on("error", () => undefined);
              await c.connect();
            }
            await c.query("INSERT INTO public.acked (id) VALUES ($1)", [id]);
            acked.push(id);
          } catch {
            errors++;
            await c?.end().catch(() => undefined);
            c = undefined;
            await sleep(100);
          }
        }
        await c?.end().catch(() => undefined);
      }),
    );
    return {
      acked,
      async stop() {
        stop = true;
        await done;
        return { acked, errors };
      },
    };
  }

  async function ids(url: string): Promise<Set<number>> {
    return new Set((await query<{ id: string }>(url, "SELECT id FROM public.acked")).map((r) => Number(r.id)));
  }

  it("loses no acknowledged commit when the primary, the pooler and a replica are killed, and one up heals each", async function () {
    this.timeout(600_000);
    const w = ackingWriters();
    const progress = async () => {
      const n = w.acked.length;
      await waitFor("acknowledged commits to continue", 60_000, async () => (w.acked.length > n + 50 ? true : undefined));
    };
    await progress();
    for (const victim of ["primary", "pgbouncer", "replica-0"] as const) {
      const s = await status(stack);
      const pid = victim === "pgbouncer" ? s.pooler.pid! : s.nodes.find((n) => n.node === victim)!.pid!;
      process.kill(pid, "SIGKILL");
      await waitFor(`${victim} to be gone`, 30_000, async () => (processAlive(pid, victim === "pgbouncer" ? "pgbouncer" : "postgres") ? undefined : true));
      const down = await nbdb(["status", "--stack", stack]);
      expect(down.code, `status with ${victim} killed`).to.equal(1);
      const res = await up({ stack, bundles: false });
      expect(res.changes.join("\n")).to.match(victim === "pgbouncer" ? /started pgbouncer/ : victim === "primary" ? /started the primary/ : /restarted replica-0/);
      expect((await status(stack)).problems, `after up healed ${victim}`).to.deep.equal([]);
      await progress();
    }
    const { acked, errors } = await w.stop();
    console.log(`      ${acked.length} acknowledged commits, ${errors} failed tries during the outages`);
    const onPrimary = await ids(out.connections.admin);
    expect(acked.filter((id) => !onPrimary.has(id))).to.deep.equal([]);
    const replica = onPort(out.connections.admin, out.replicas[0].port);
    const [{ lsn }] = await query<{ lsn: string }>(out.connections.admin, "SELECT pg_current_wal_lsn()::text AS lsn");
    await waitFor("the replica to replay everything", 60_000, async () =>
      (await query<{ ok: boolean }>(replica, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok", [lsn]))[0].ok ? true : undefined,
    );
    const onReplica = await ids(replica);
    expect(acked.filter((id) => !onReplica.has(id))).to.deep.equal([]);
  });

  it("reads through the client fall back to the primary while the only replica is down", async function () {
    const db = new NeuralBlitzDb({ outputs: out, dataKey: "k".repeat(32) });
    try {
      const user = "00000000-0000-4000-8000-000000000001";
      const read = () => db.withUser(user, async (tx) => (await tx.query("SELECT pg_is_in_recovery() AS r")).rows[0].r as boolean, { readOnly: true });
      expect(await read()).to.equal(true);
      const pid = (await status(stack)).nodes[1].pid!;
      process.kill(pid, "SIGKILL");
      await waitFor("replica-0 to be gone", 30_000, async () => (processesUsing(path.join(stackDir(stack), "replica-0")).length ? undefined : true));
      for (let i = 0; i < 5; i++) expect(await read()).to.equal(false);
      await up({ stack, bundles: false });
      expect(await read()).to.be.oneOf([true, false]);
    } finally {
      await db.close();
    }
  });
});

/** Every file of a stack but its state (which holds the passwords by design) that contains `secret`. */
/** Files holding `secret`, besides the stack's credential files (state, outputs, the libpq service file; all mode 0600). */
function filesHolding(dir: string, secret: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !["state.json", ".state.backup.json", "outputs.json", "pg_service.conf"].includes(e.name) && fs.readFileSync(p).includes(secret)) found.push(p);
    }
  };
  walk(dir);
  return found;
}

describe("recovery: up killed halfway", function () {
  it("redoes an initdb killed with its whole process group, leaving no password file and no stray server", async function () {
    this.timeout(300_000);
    const stack = uniqueStack("initkill");
    const dir = stackDir(stack);
    const child = spawn(process.execPath, [BIN, "up", "--stack", stack, "--replicas", "0", "--bundles", "/nonexistent-never-reached"], { env: process.env, detached: true, stdio: "ignore" });
    await waitFor("initdb to begin", 60_000, async () => (fs.existsSync(path.join(dir, "primary", "PG_VERSION")) ? true : undefined));
    process.kill(-child.pid!, "SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const res = await up({ stack, bundles: false });
    expect(res.changes[0]).to.match(/^(redid the primary's interrupted initdb|initialised the primary)$/);
    expect(res.changes).to.include("created roles, database and schema");
    expect((await status(stack)).problems).to.deep.equal([]);
    const [{ n }] = await query<{ n: string }>(res.outputs.connections.migrator, "SELECT current_database() AS n");
    expect(n).to.equal("neuralblitz");
    const password = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")).passwords.postgres as string;
    expect(filesHolding(dir, password)).to.deep.equal([]);
    expect(fs.existsSync(path.join(dir, "log", ".initdb-pw"))).to.equal(false);
    await down({ stack, purge: true, yes: true });
  });

  it("finishes a replica whose base backup was killed with up's whole process group", async function () {
    this.timeout(300_000);
    const stack = uniqueStack("bbkill");
    const out = (await up({ stack, replicas: 0, bundles: false })).outputs;
    // Enough data that the base backup takes a moment to copy.
    await query(out.connections.admin, "CREATE TABLE public.bulk AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, 200000) g");
    const replicaDir = path.join(stackDir(stack), "replica-0");
    const child = spawn(process.execPath, [BIN, "up", "--stack", stack, "--replicas", "1"], { env: process.env, detached: true, stdio: "ignore" });
    await waitFor("the base backup to begin", 60_000, async () => (fs.existsSync(path.join(replicaDir, "base")) ? true : undefined));
    process.kill(-child.pid!, "SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const res = await up({ stack, bundles: false });
    expect(res.changes.join("\n")).to.match(/replica-0/);
    expect((await status(stack)).problems).to.deep.equal([]);
    expect(await query(onPort(out.connections.admin, res.outputs.replicas[0].port), "SELECT count(*)::int AS n FROM public.bulk")).to.deep.equal([{ n: 200000 }]);
    await down({ stack, purge: true, yes: true });
  });

  it("ends an orphaned pg_basebackup that still holds the slot and takes the replica again", async function () {
    this.timeout(300_000);
    const stack = uniqueStack("orphan");
    const out = (await up({ stack, replicas: 0, bundles: false })).outputs;
    const dir = stackDir(stack);
    const state = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8"));
    await query(out.connections.admin, "SELECT pg_create_physical_replication_slot('replica_0')");
    // A base backup a killed `up` left behind: slow, holding the slot, writing into replica-0/.
    const replicaDir = path.join(dir, "replica-0");
    fs.mkdirSync(replicaDir, { mode: 0o700 });
    const pgUser = fs.readFileSync("/etc/passwd", "utf8").split("\n").map((l) => l.split(":")).find((e) => e[0] === "postgres");
    if (process.getuid?.() === 0 && pgUser) fs.chownSync(replicaDir, Number(pgUser[2]), Number(pgUser[3]));
    const orphan = spawn(
      findBinaries().pgBinDir + "/pg_basebackup",
      [`--pgdata=${replicaDir}`, `--dbname=host=127.0.0.1 port=${out.primary.port} user=nb_replicator application_name=replica-0`, "--slot=replica_0", "--max-rate=32k", "--checkpoint=fast", "--wal-method=stream", "--no-password"],
      { env: { ...process.env, PGPASSWORD: state.passwords.nb_replicator, PGSSLMODE: "verify-full", PGSSLROOTCERT: caFile(stack), ...(pgUser ? { HOME: pgUser[5] } : {}) }, detached: true, stdio: ["ignore", "ignore", "pipe"], ...(process.getuid?.() === 0 && pgUser ? { uid: Number(pgUser[2]), gid: Number(pgUser[3]) } : {}) },
    );
    try {
      let orphanErr = "";
      orphan.stderr?.on("data", (d) => (orphanErr += d));
      await waitFor("the orphan to write", 60_000, async () => (fs.readdirSync(replicaDir).length > 0 ? true : undefined)).catch((e) => {
        throw new Error(`${(e as Error).message}: ${orphanErr}`);
      });
      const res = await up({ stack, replicas: 1, bundles: false });
      expect(res.changes).to.include("redid replica-0's interrupted base backup");
      expect(processAlive(orphan.pid, "pg_basebackup")).to.equal(false);
      expect((await status(stack)).problems).to.deep.equal([]);
    } finally {
      if (orphan.exitCode === null) orphan.kill("SIGKILL");
    }
    await down({ stack, purge: true, yes: true });
  });
});
