// Backups and point-in-time recovery against real servers and a real pgBackRest repository.
import { expect } from "chai";
import { Client } from "pg";
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { backup, listBackups, parseBackupType, restore } from "../scripts/ops/backup";
import { archiveStatus } from "../scripts/local/backupRepo";
import { verifyAuditTrail } from "../scripts/ops/audit";
import { down, status, up } from "../scripts/local/stack";
import { loadState, stackDir } from "../scripts/local/state";
import { BACKUP_ROLE } from "../infra/topology/pgbackrest";
import { query, rejection, uniqueStack } from "./helpers";

describe("backups and point-in-time recovery (pgBackRest)", function () {
  this.timeout(600_000);
  const source = uniqueStack("pitr");
  let out: Awaited<ReturnType<typeof up>>["outputs"];
  const write = (label: string) =>
    query(out.connections.admin, "INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ($1, 'm', '>', 1, 'info')", [label]);
  const labels = async (url: string) =>
    (await query<{ rule: string }>(url, "SELECT rule FROM neuralblitz.monitoring_alerts WHERE rule LIKE 'pitr-%' ORDER BY rule")).map((r) => r.rule);

  before(async function () {
    out = (await up({ stack: source, replicas: 1 })).outputs;
  });

  it("archives WAL from the primary and creates the stanza idempotently", async function () {
    const again = await up({ stack: source });
    expect(again.changes).to.deep.equal([]);
    const s = await status(source);
    expect(s.backup?.archiving).to.equal(true);
    const [role] = await query<{ rolsuper: boolean; rolreplication: boolean }>(out.connections.admin, "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = $1", [BACKUP_ROLE]);
    expect(role).to.deep.equal({ rolsuper: false, rolreplication: false });
  });

  it("refuses a restore before any backup, changing nothing", async function () {
    const into = uniqueStack("early");
    const msg = await rejection(restore({ stack: source, to: new Date().toISOString(), into }));
    expect(msg).to.match(/no backup yet/);
    expect(fs.existsSync(stackDir(into))).to.equal(false);
  });

  it("restores into a new stack exactly the rows committed before the time, with an intact audit chain", async function () {
    const secret = async (url: string, key: string) => {
      const c = new Client({ connectionString: url });
      await c.connect();
      try {
        await c.query("BEGIN");
        await c.query("SELECT neuralblitz.set_user_context(NULL, $1)", [key]);
        await c.query("CREATE TABLE IF NOT EXISTS public.pitr_secret AS SELECT neuralblitz.encrypt_secret('kept secret') AS v");
        const r = await c.query("SELECT neuralblitz.decrypt_secret(v) AS plain FROM public.pitr_secret");
        await c.query("COMMIT");
        return r.rows[0].plain as string;
      } finally {
        await c.end();
      }
    };
    expect(await secret(out.connections.admin, loadState(source)!.dataKey)).to.equal("kept secret");
    const full = await backup({ stack: source, type: "full" });
    expect(full.type).to.equal("full");
    await write("pitr-1-before");
    await write("pitr-2-before");
    const incr = await backup({ stack: source, type: "incr" });
    expect(incr.type).to.equal("incr");
    await write("pitr-3-before");
    const [{ t }] = await query<{ t: string }>(out.connections.admin, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`);
    await write("pitr-4-after");
    await write("pitr-5-after");
    const list = await listBackups(source);
    expect(list.backups.map((b) => b.type)).to.deep.equal(["full", "incr"]);

    const into = uniqueStack("restored");
    const r = await restore({ stack: source, to: t, into });
    expect(await labels(r.outputs.connections.admin)).to.deep.equal(["pitr-1-before", "pitr-2-before", "pitr-3-before"]);
    // The source is untouched.
    expect(await labels(out.connections.admin)).to.deep.equal(["pitr-1-before", "pitr-2-before", "pitr-3-before", "pitr-4-after", "pitr-5-after"]);
    // A normal stack of its own: own ports, own passwords, the source's data key, replicas rebuilt.
    const src = loadState(source)!;
    const dst = loadState(into)!;
    expect(dst.dataKey).to.equal(src.dataKey);
    // Encrypted before the backup, readable in the copy with the copy's own data key.
    expect(await secret(r.outputs.connections.admin, dst.dataKey)).to.equal("kept secret");
    expect(dst.ports.primary).to.not.equal(src.ports.primary);
    expect(dst.passwords.nb_app).to.not.equal(src.passwords.nb_app);
    expect(dst.passwords.postgres).to.not.equal(src.passwords.postgres);
    const s = await status(into);
    expect(s.nodes.map((n) => [n.node, n.running, n.streaming])).to.deep.equal([["primary", true, null], ["replica-0", true, true]]);
    expect(s.backup?.archiving).to.equal(true);
    // The source's credentials do not open the copy.
    // (Its own pooler, verified with its own CA, so the password is what is tested.)
    const staleUrl = new URL(out.connections.app.replace(`:${src.ports.pooler}/`, `:${dst.ports.pooler}/`));
    staleUrl.searchParams.set("sslrootcert", new URL(r.outputs.connections.app).searchParams.get("sslrootcert")!);
    const stale = staleUrl.toString();
    expect(await rejection(query(stale, "SELECT 1"))).to.match(/password authentication failed|authentication/);
    // The app reaches its rows through the copy's pooler.
    expect((await query(r.outputs.connections.app, "SELECT 1 AS one"))[0]).to.deep.equal({ one: 1 });
    const verdict = await verifyAuditTrail(r.outputs.connections.auditor);
    expect(verdict.broken).to.deep.equal([]);
    expect(verdict.entries).to.be.greaterThan(0);
    // The copy archives into its own repository, and up on it changes nothing more.
    expect((await up({ stack: into })).changes).to.deep.equal([]);
    await backup({ stack: into });
    expect((await listBackups(into)).backups).to.have.length(1);
    expect((await listBackups(source)).backups).to.have.length(2);
    expect((await archiveStatus(loadState(into)!)).failing).to.equal(false);
  });

  it("heals a restore killed after the copy: the next up promotes it and rotates its passwords", async function () {
    await write("pitr-6-before-kill");
    const [{ t }] = await query<{ t: string }>(out.connections.admin, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`);
    await write("pitr-7-after-kill");
    const into = uniqueStack("killed");
    const child = spawn(process.execPath, [path.join(__dirname, "..", "bin", "nbdb.js"), "restore", "--stack", source, "--to", t, "--into", into], { stdio: "ignore" });
    const exited = new Promise((r) => child.once("exit", r));
    const pending = path.join(stackDir(into), "restore-pending.json");
    // Killed once the copy is complete (the primary's directory is in place) and before the restore finished.
    while (!(fs.existsSync(pending) && fs.existsSync(path.join(stackDir(into), "primary")))) {
      expect(child.exitCode, "nbdb restore ended before it could be killed").to.equal(null);
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGKILL");
    await exited;
    expect(fs.existsSync(pending), "killed after the restore finished").to.equal(true);
    const res = await up({ stack: into });
    expect(res.changes.join("\n")).to.match(/finished the restore from stack .* promoted, new passwords for every role/);
    expect(fs.existsSync(pending)).to.equal(false);
    const labelsThere = await labels(res.outputs.connections.admin);
    expect(labelsThere).to.include("pitr-6-before-kill");
    expect(labelsThere).to.not.include("pitr-7-after-kill");
    expect(loadState(into)!.passwords.postgres).to.not.equal(loadState(source)!.passwords.postgres);
    expect((await up({ stack: into })).changes).to.deep.equal([]);
  });

  it("refuses bad restore requests with a clear error and changes nothing", async function () {
    const into = uniqueStack("bad");
    expect(await rejection(restore({ stack: source, to: "2000-01-01T00:00:00Z", into }))).to.match(/before the end of the oldest backup/);
    expect(await rejection(restore({ stack: source, to: new Date(Date.now() + 3600_000).toISOString(), into }))).to.match(/in the future/);
    expect(await rejection(restore({ stack: source, to: "yesterday", into }))).to.match(/time with its zone/);
    expect(await rejection(restore({ stack: source, to: "2026-12-01 10:00:00", into }))).to.match(/time with its zone/);
    expect(await rejection(restore({ stack: source, to: new Date().toISOString(), into: source }))).to.match(/never overwrites/);
    expect(await rejection(restore({ stack: source, to: new Date().toISOString(), into: "no such" }))).to.match(/invalid stack name/);
    expect(fs.existsSync(stackDir(into))).to.equal(false);
    const existing = uniqueStack("taken");
    fs.mkdirSync(stackDir(existing));
    fs.writeFileSync(`${stackDir(existing)}/keep`, "mine");
    expect(await rejection(restore({ stack: source, to: new Date().toISOString(), into: existing }))).to.match(/already exists/);
    expect(fs.readdirSync(stackDir(existing))).to.deep.equal(["keep"]);
    fs.rmSync(stackDir(existing), { recursive: true });
    expect(() => parseBackupType("weekly")).to.throw(/full, diff, incr/);
  });
});

describe("backups: an existing stack, an unreachable repository", function () {
  this.timeout(600_000);

  it("turns archiving on for a stack built without pgBackRest and says the primary needs a restart", async function () {
    const stack = uniqueStack("late");
    process.env.NBDB_PGBACKREST = "/nonexistent/pgbackrest";
    try {
      await up({ stack, replicas: 0 });
    } finally {
      delete process.env.NBDB_PGBACKREST;
    }
    expect((await status(stack)).backup?.archiving).to.equal(false);
    const res = await up({ stack });
    expect(res.changes.join("\n")).to.match(/restart changed \(.*archive_mode.*\)/);
    expect(res.changes.join("\n")).to.match(/created the backup repository/);
    expect(await rejection(backup({ stack }))).to.match(/archiving is not active.*restart/s);
    expect((await listBackups(stack)).backups).to.deep.equal([]);
    await down({ stack });
    await up({ stack });
    expect((await backup({ stack })).type).to.equal("full");
  });

  it("reports in status when WAL cannot reach the repository (and pg_wal grows); keeps the repository where NBDB_BACKUP_ROOT says", async function () {
    const stack = uniqueStack("norepo");
    const root = path.join(process.env.NBDB_HOME!, "elsewhere", "backups");
    process.env.NBDB_BACKUP_ROOT = root;
    const out = (await up({ stack, replicas: 0 })).outputs;
    const repo = (await listBackups(stack)).repository;
    expect(repo).to.equal(path.join(root, stack));
    expect(fs.existsSync(path.join(repo, "backup", stack, "backup.info"))).to.equal(true);
    fs.renameSync(repo, `${repo}.away`);
    try {
      await query(out.connections.admin, "SELECT pg_switch_wal(), txid_current()");
      await query(out.connections.admin, "CREATE TABLE public.filler AS SELECT g FROM generate_series(1, 1000) g; SELECT pg_switch_wal()");
      let s = await status(stack);
      for (let i = 0; i < 100 && !s.backup?.failing; i++) {
        await new Promise((r) => setTimeout(r, 200));
        s = await status(stack);
      }
      expect(s.backup?.failing).to.equal(true);
      expect(s.backup?.walWaiting).to.be.greaterThan(0);
      expect(await rejection(backup({ stack }))).to.match(/backup|archive/i);
    } finally {
      fs.renameSync(`${repo}.away`, repo);
      delete process.env.NBDB_BACKUP_ROOT;
    }
  });
});
