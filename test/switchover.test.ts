// Switchover and failover of the local stack (issue 18, item 2; docs/switchover.md), against real
// servers: no acknowledged commit lost in a switchover under write load through the pooler; after a
// SIGKILL of the primary the most advanced replica is promoted; the old primary comes back as a
// replica; an interrupted role change is finished by `nbdb up`; `up` afterwards changes nothing.
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { up, status } from "../scripts/local/stack";
import { DEMOTED_DIR, PROMOTED_MARKER, failover, switchover } from "../scripts/local/switchover";
import { LocalStackOutputs, loadState, saveState, stackDir } from "../scripts/local/state";
import { findBinaries, waitFor } from "../scripts/local/system";
import { withAdminConsole } from "../scripts/local/pooler";
import { execFile, execFileSync } from "child_process";
import { query, rejection, uniqueStack } from "./helpers";
import { WriterLoad, startWriters as startKeyedWriters } from "../scripts/bench/writeStall";

/** pg_ctl as the server user (postgres when the tests run as root). */
function pgCtl(args: string[]): void {
  const pgCtlBin = path.join(findBinaries().pgBinDir, "pg_ctl");
  const [cmd, ...pre] = process.getuid?.() === 0 ? ["runuser", "-u", "postgres", "--", pgCtlBin] : [pgCtlBin];
  execFileSync(cmd, [...pre, ...args], { cwd: "/" });
}

function onPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

/** `n` clients inserting through the pooler, each id recorded once its commit is acknowledged; errors reconnect. */
function startWriters(url: string, n = 4): WriterLoad {
  return startKeyedWriters(url, "INSERT INTO public.acks (id) VALUES ($1)", n, { keyed: true });
}

async function waitAcked(w: WriterLoad, more: number): Promise<void> {
  const from = w.commits();
  await waitFor(`${more} more acknowledged commits`, 60_000, async () => (w.commits() >= from + more ? true : undefined)).catch((e: Error) => {
    throw new Error(`${e.message} (last client error: ${w.lastError()})`);
  });
}

async function missing(admin: string, ids: string[]): Promise<string[]> {
  const rows = await query<{ id: string }>(admin, "SELECT id FROM public.acks WHERE id = ANY($1::text[])", [ids]);
  const present = new Set(rows.map((r) => r.id));
  return ids.filter((id) => !present.has(id));
}

/** Stop the primary cleanly and wait until replica `i` has replayed all it wrote before (its shutdown checkpoint aside). */
async function stopPrimaryReplayedOn(out: LocalStackOutputs, dir: string, i: number): Promise<void> {
  const [{ lsn }] = await query<{ lsn: string }>(out.connections.admin, "SELECT pg_current_wal_lsn()::text AS lsn");
  pgCtl(["stop", "-D", path.join(dir, "primary"), "-m", "fast", "--wait"]);
  const replica = onPort(out.connections.admin, out.replicas[i].port);
  await waitFor(`replica-${i} to replay ${lsn}`, 60_000, async () =>
    (await query<{ ok: boolean }>(replica, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok", [lsn]))[0].ok ? true : undefined,
  );
}

async function timeline(url: string): Promise<number> {
  const [r] = await query<{ tli: number }>(url, "SELECT timeline_id AS tli FROM pg_control_checkpoint()");
  return Number(r.tli);
}

describe("switchover and failover of the local stack", function () {
  this.timeout(600_000);
  const stack = uniqueStack("switch");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 2, bundles: false })).outputs;
    await query(out.connections.admin, "CREATE TABLE public.acks (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())");
    await query(out.connections.admin, "GRANT USAGE ON SCHEMA public TO nb_app; GRANT SELECT, INSERT ON public.acks TO nb_app");
  });

  it("refuses a failover while the primary runs, naming it and switchover, and changes nothing", async function () {
    const msg = await rejection(failover({ stack }));
    expect(msg).to.match(/primary of stack '.*' is running \(pid \d+, port \d+\)/);
    expect(msg).to.include(`nbdb switchover --stack ${stack}`);
    expect(loadState(stack)!.operation).to.equal(undefined);
    // The command line: exit code 2 and the same message.
    const cli = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [path.join(__dirname, "..", "bin", "nbdb.js"), "failover", "--stack", stack], { env: process.env }, (err, _o, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code) : 0, stderr }),
      ),
    );
    expect(cli.code).to.equal(2);
    expect(cli.stderr).to.match(/is running \(pid \d+, port \d+\).*nbdb switchover/s);
    expect(await rejection(switchover({ stack, to: "replica-7" }))).to.match(/--to must name a replica .*replica-0, replica-1.*got 'replica-7'/);
    expect((await status(stack)).problems).to.deep.equal([]);
  });

  it("switches over under write load through the pooler without losing an acknowledged commit", async function () {
    const tliBefore = await timeline(out.connections.admin);
    const writers = startWriters(out.connections.app);
    await waitAcked(writers, 200);
    const r = await switchover({ stack, to: "replica-1" });
    writers.mark();
    // Writes resume through the same pooler URL.
    await waitAcked(writers, 200);
    const w = await writers.stop();
    console.log(`      ${w.acked.length} acknowledged commits, ${w.errors} client errors, ${w.keptConnection} of 4 writers kept their pooler connection`);
    expect(r.promoted).to.equal("replica-1");
    expect(r.formerPrimary).to.match(/re-attached as replica-1/);
    expect(await missing(out.connections.admin, w.acked)).to.deep.equal([]);
    // Paused, not refused: the clients waited on their pooler connections.
    expect(w.keptConnection).to.be.greaterThan(0);
    // The primary's port now serves the promoted replica's data: a new timeline, accepting writes.
    const [{ standby }] = await query<{ standby: boolean }>(out.connections.admin, "SELECT pg_is_in_recovery() AS standby");
    expect(standby).to.equal(false);
    expect(await timeline(out.connections.admin)).to.equal(tliBefore + 1);
    // The old primary streams as replica-1 from its own slot; replica-0 followed the new primary.
    const replicas = await query<{ application_name: string; slot: string }>(
      out.connections.admin,
      "SELECT r.application_name, s.slot_name AS slot FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid ORDER BY 1",
    );
    expect(replicas).to.deep.equal([{ application_name: "replica-0", slot: "replica_0" }, { application_name: "replica-1", slot: "replica_1" }]);
    const [conninfo] = await query<{ primary_conninfo: string }>(onPort(out.connections.admin, out.replicas[1].port), "SHOW primary_conninfo");
    expect(conninfo.primary_conninfo).to.include("sslmode=verify-full");
    expect((await status(stack)).problems).to.deep.equal([]);
    expect(loadState(stack)!.operation).to.equal(undefined);
    const again = await up({ stack, bundles: false });
    expect(again.changes).to.deep.equal([]);
    expect(again.outputs).to.deep.equal(out);
  });

  it("after a SIGKILL of the primary, fails over to the most advanced replica and re-attaches the old primary", async function () {
    const admin = out.connections.admin;
    // replica-0 stops receiving: replica-1 is the most advanced when the primary dies (the lower index would win a tie).
    const replica0 = onPort(admin, out.replicas[0].port);
    const [{ pid: receiver }] = await query<{ pid: number }>(replica0, "SELECT pid FROM pg_stat_wal_receiver");
    process.kill(receiver, "SIGSTOP");
    const writers = startWriters(out.connections.app);
    try {
      await waitAcked(writers, 100);
      // More WAL than the socket buffers between them hold, so replica-0 stays behind once continued.
      await query(admin, "CREATE TABLE public.ballast AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 300000) g");
      const pid = Number(fs.readFileSync(path.join(stackDir(stack), "primary", "postmaster.pid"), "utf8").split("\n")[0]);
      process.kill(pid, "SIGKILL");
    } finally {
      process.kill(receiver, "SIGCONT");
    }
    await waitFor("the primary to be gone", 30_000, async () => ((await status(stack)).nodes[0].running ? undefined : true));
    const r = await failover({ stack });
    writers.mark();
    await waitAcked(writers, 100);
    const w = await writers.stop();
    expect(r.promoted).to.equal("replica-1");
    expect(r.formerPrimary).to.match(/re-attached as replica-1/);
    const [{ standby }] = await query<{ standby: boolean }>(admin, "SELECT pg_is_in_recovery() AS standby");
    expect(standby).to.equal(false);
    // Asynchronous replicas: what was acknowledged after the last WAL replica-1 received may be lost;
    // every commit since the failover is there.
    console.log(`      ${(await missing(admin, w.acked)).length} of ${w.acked.length} acknowledged commits missing after the failover (asynchronous replicas)`);
    const after = w.acked.slice(-50);
    expect(await missing(admin, after)).to.deep.equal([]);
    const s = await status(stack);
    expect(s.problems).to.deep.equal([]);
    expect(s.nodes.map((n) => [n.node, n.streaming])).to.deep.equal([["primary", null], ["replica-0", true], ["replica-1", true]]);
    expect((await up({ stack, bundles: false })).changes).to.deep.equal([]);
  });

  it("refuses a new role change while one is recorded, and up finishes a switchover interrupted after its promotion", async function () {
    const state = loadState(stack)!;
    // The state a crash leaves right after `pg_ctl promote`: the operation recorded, the primary
    // stopped cleanly, replica-0 promoted, nothing exchanged yet.
    state.operation = { kind: "switchover", target: 0, step: "started", startedAt: new Date().toISOString() };
    saveState(state);
    expect(await rejection(switchover({ stack }))).to.match(/a switchover of stack .* to replica-0 .* did not finish; nothing was changed now\. Finish it first: npx nbdb up/);
    expect((await status(stack)).problems.join("\n")).to.match(/a switchover to replica-0 was interrupted .*npx nbdb up finishes or undoes it/);
    const [{ count: before }] = await query<{ count: string }>(out.connections.admin, "SELECT count(*) FROM public.acks");
    await stopPrimaryReplayedOn(out, stackDir(stack), 0);
    pgCtl(["promote", "-D", path.join(stackDir(stack), "replica-0"), "--wait"]);
    const healed = await up({ stack, bundles: false });
    expect(healed.changes.join("\n")).to.match(/finished the interrupted switchover: replica-0's data is the primary's/);
    expect(loadState(stack)!.operation).to.equal(undefined);
    const [{ count: now }] = await query<{ count: string }>(out.connections.admin, "SELECT count(*) FROM public.acks");
    expect(now).to.equal(before);
    await query(out.connections.app, "INSERT INTO public.acks (id) VALUES ('after-heal')");
    expect((await status(stack)).problems).to.deep.equal([]);
    expect((await up({ stack, bundles: false })).changes).to.deep.equal([]);
  });

  it("up finishes a switchover interrupted in the middle of exchanging the data directories", async function () {
    const dir = stackDir(stack);
    const state = loadState(stack)!;
    state.operation = { kind: "switchover", target: 0, step: "promoted", startedAt: new Date().toISOString() };
    saveState(state);
    await query(out.connections.app, "INSERT INTO public.acks (id) VALUES ('before-exchange')");
    // The state a crash leaves after the first rename: replica-0 promoted, stopped and marked,
    // primary/ moved to its waiting place, nothing in primary/ yet.
    await stopPrimaryReplayedOn(out, dir, 0);
    pgCtl(["promote", "-D", path.join(dir, "replica-0"), "--wait"]);
    pgCtl(["stop", "-D", path.join(dir, "replica-0"), "-m", "fast", "--wait"]);
    fs.writeFileSync(path.join(dir, "replica-0", PROMOTED_MARKER), "test\n");
    fs.renameSync(path.join(dir, "primary"), path.join(dir, DEMOTED_DIR));
    const healed = await up({ stack, bundles: false });
    expect(healed.changes.join("\n")).to.match(/finished the interrupted switchover: replica-0's data is the primary's; the old primary re-attached as replica-0/);
    expect(fs.existsSync(path.join(dir, DEMOTED_DIR))).to.equal(false);
    expect(await missing(out.connections.admin, ["before-exchange"])).to.deep.equal([]);
    await query(out.connections.app, "INSERT INTO public.acks (id) VALUES ('after-exchange')");
    expect((await status(stack)).problems).to.deep.equal([]);
    expect((await up({ stack, bundles: false })).changes).to.deep.equal([]);
  });

  it("up undoes a switchover interrupted before its promotion: the old primary and the pooler are back", async function () {
    const state = loadState(stack)!;
    state.operation = { kind: "switchover", target: 1, step: "started", startedAt: new Date().toISOString() };
    saveState(state);
    // The state a crash leaves after the pause and the primary's shutdown, before the promotion.
    await withAdminConsole(state, (c) => c.query("PAUSE neuralblitz"));
    pgCtl(["stop", "-D", path.join(stackDir(stack), "primary"), "-m", "fast", "--wait"]);
    const healed = await up({ stack, bundles: false });
    expect(healed.changes.join("\n")).to.match(/undid the switchover to replica-1 before its promotion/);
    expect(loadState(stack)!.operation).to.equal(undefined);
    const [{ standby }] = await query<{ standby: boolean }>(onPort(out.connections.admin, out.replicas[1].port), "SELECT pg_is_in_recovery() AS standby");
    expect(standby).to.equal(true);
    await query(out.connections.app, "INSERT INTO public.acks (id) VALUES ('after-undo')");
    expect((await status(stack)).problems).to.deep.equal([]);
  });

  it("fails over when the primary's data directory is gone too: the old primary's replica is built anew by a base backup", async function () {
    const admin = out.connections.admin;
    await query(out.connections.app, "INSERT INTO public.acks (id) VALUES ('before-loss')");
    const primaryDir = path.join(stackDir(stack), "primary");
    process.kill(Number(fs.readFileSync(path.join(primaryDir, "postmaster.pid"), "utf8").split("\n")[0]), "SIGKILL");
    await waitFor("the primary to be gone", 30_000, async () => ((await status(stack)).nodes[0].running ? undefined : true));
    fs.rmSync(primaryDir, { recursive: true, force: true });
    const r = await failover({ stack });
    expect(r.formerPrimary).to.match(/no data left: replica-\d is built anew by a base backup/);
    expect(r.steps.join("\n")).to.match(/up: created replica-\d/);
    await query(out.connections.app, "INSERT INTO public.acks (id) VALUES ('after-loss')");
    expect(await missing(admin, ["after-loss"])).to.deep.equal([]);
    expect((await status(stack)).problems).to.deep.equal([]);
    expect((await up({ stack, bundles: false })).changes).to.deep.equal([]);
  });
});
