// `nbdb switchover` and `nbdb failover` on the local stack (docs/switchover.md): a replica's data
// becomes the primary's. The roles keep their directories and ports (`primary/` on the primary's
// port, `replica-<i>/` on replica i's), so the pooler, outputs.json and pg_service.conf need no new
// address: the data directories are exchanged while both servers are stopped, and the old primary
// comes back as replica <target> (pg_rewind), streaming from the new one over verified TLS.
//
// Each step is recorded in state.json (`operation`) before it acts; `finishRoleChange` (called by
// `nbdb up`, or the command run again) picks up from what the directories say.
import * as fs from "fs";
import * as path from "path";
import { DATABASE } from "../../schema/roles";
import { ensureSlotsSql, lsnValue, replicaSlotName, replicaApplicationName } from "../../infra/topology/replicaBootstrap";
import { LocalContext, bin, localContext } from "./context";
import { UserError } from "../errors";
import {
  NodeName,
  clusterState,
  dataDir,
  controlData,
  discardableReplicaDir,
  killRemains,
  markComplete,
  portOf,
  replicaName,
  runReplicaBootstrap,
  runningPid,
  startNode,
  clearStaleLocks,
  stopNode,
  withSuperuser,
  writeNodeConf,
  writeServerFile,
} from "./postgresNode";
import { poolerPid, withAdminConsole } from "./pooler";
import { LocalStackOutputs, RoleChange, StackState, requireStack, saveState } from "./state";
import { replicationRows, up, withStackLock } from "./stack";
import { run, waitFor } from "./system";

/** Written into the promoted replica's directory before the exchange: where it is tells how far the exchange got. */
export const PROMOTED_MARKER = "nbdb-promoted";
/** Where the old primary's directory waits during the exchange. */
export const DEMOTED_DIR = ".demoted-primary";
/** How long the pooler may take to pause (transactions in flight finish), and the target to replay the last WAL. */
const PAUSE_TIMEOUT_MS = 30_000;
const REPLAY_TIMEOUT_MS = 60_000;

export interface RoleChangeResult {
  readonly kind: RoleChange["kind"];
  /** The replica whose data is now the primary's. */
  readonly promoted: NodeName;
  /** What became of the old primary's data. */
  readonly formerPrimary: string;
  /** What the command did, one line each, then what the closing `up` changed. */
  readonly steps: string[];
  readonly outputs: LocalStackOutputs;
}

/** `--to replica-<i>` of one of a stack's `replicas`, as its index; a clear error otherwise (the local and the Docker switchover's). */
export function parseReplicaNode(value: string, replicas: number, stack: string): number {
  const m = /^replica-(\d+)$/.exec(value.trim());
  const known = Array.from({ length: replicas }, (_, i) => replicaName(i)).join(", ") || "none";
  if (!m || Number(m[1]) >= replicas) {
    throw new UserError(`--to must name a replica of stack '${stack}' (${known}), got '${value}'.`);
  }
  return Number(m[1]);
}

function refuseIfBusy(state: StackState): void {
  const op = state.operation;
  if (op) {
    throw new UserError(
      `a ${op.kind} of stack '${state.stack}' to ${replicaName(op.target)} started at ${op.startedAt} did not finish; ` +
        `nothing was changed now. Finish it first: npx nbdb up --stack ${state.stack}`,
    );
  }
}

// ---- the pooler ----------------------------------------------------------------------------

/** PAUSE the transaction pool: in-flight transactions finish, new ones wait on their client connection. */
async function pausePooler(ctx: LocalContext, state: StackState): Promise<boolean> {
  if (!poolerPid(ctx)) return false;
  await withAdminConsole(state, async (c) => {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the pooler did not pause within ${PAUSE_TIMEOUT_MS / 1000} s (a transaction stays open through it)`)), PAUSE_TIMEOUT_MS);
    });
    try {
      await Promise.race([c.query(`PAUSE ${DATABASE}`), limit]);
    } finally {
      clearTimeout(timer);
    }
  });
  return true;
}

/** RESUME the pool (if paused) and have every server connection replaced by one to the primary now there. */
async function resumePooler(ctx: LocalContext, state: StackState): Promise<void> {
  if (!poolerPid(ctx)) return;
  await withAdminConsole(state, async (c) => {
    // RESUME of a pool that is not paused is an error; nothing to do then.
    await c.query(`RESUME ${DATABASE}`).catch((e: Error) => {
      if (!/not paused|is not paused/i.test(e.message)) throw e;
    });
    await c.query("RECONNECT");
  });
}

// ---- servers -----------------------------------------------------------------------------

/** True once the target replica has replayed past `lsn` (the old primary's shutdown checkpoint). */
async function waitReplayedPast(state: StackState, target: number, lsn: string): Promise<void> {
  await waitFor(`${replicaName(target)} to replay the old primary's last WAL (${lsn})`, REPLAY_TIMEOUT_MS, () =>
    withSuperuser(state, portOf(state, replicaName(target)), async (c) =>
      (await c.query("SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), $1::pg_lsn) > 0 AS past", [lsn])).rows[0].past ? true : undefined,
    ),
  );
}

/** True when the target's data (in `dir`) no longer is a standby's: promoted. */
async function isPromoted(ctx: LocalContext, state: StackState, node: NodeName, dir: string): Promise<boolean> {
  if (!fs.existsSync(path.join(dir, "standby.signal"))) return true;
  if (!runningPid(ctx, node)) return false;
  return withSuperuser(state, portOf(state, node), async (c) => !(await c.query("SELECT pg_catalog.pg_is_in_recovery() AS r")).rows[0].r).catch(() => false);
}

async function promote(ctx: LocalContext, state: StackState, target: number): Promise<void> {
  const node = replicaName(target);
  if (!runningPid(ctx, node)) await startNode(ctx, node);
  await run(bin(ctx, "pg_ctl"), ["promote", `--pgdata=${dataDir(ctx, node)}`, "--wait", "--timeout=120"], { as: ctx.user, timeoutMs: 130_000 });
  await waitFor(`${node} to accept writes`, 60_000, () =>
    withSuperuser(state, portOf(state, node), async (c) => ((await c.query("SELECT pg_catalog.pg_is_in_recovery() AS r")).rows[0].r ? undefined : true)),
  );
}

/** Every replica's slot on the server at `port`, WAL reserved now, so each finds what it needs when it connects. */
async function ensureSlots(state: StackState, port: number): Promise<void> {
  if (state.ports.replicas.length === 0) return;
  await withSuperuser(state, port, (c) => c.query(ensureSlotsSql(state.ports.replicas.map((_, i) => replicaSlotName(i)))));
}

/** Rewrite postgresql.auto.conf without the standby keys: the promoted replica's data as the primary's. */
function clearStandbySettings(ctx: LocalContext, dir: string): void {
  const file = path.join(dir, "postgresql.auto.conf");
  const kept = (fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "").split("\n").filter((l) => l !== "" && !/^\s*(primary_conninfo|primary_slot_name)\s*=/.test(l));
  writeServerFile(ctx, file, kept.join("\n") + "\n");
}

// ---- the exchange ------------------------------------------------------------------------

/**
 * `primary/` ← the promoted replica's data, `replica-<target>/` ← the old primary's (when there is
 * any), through DEMOTED_DIR. Both servers are stopped. Re-run after a crash, it does what is left.
 */
function exchangeDirectories(ctx: LocalContext, target: number): void {
  const primary = dataDir(ctx, "primary");
  const replica = dataDir(ctx, replicaName(target));
  const demoted = path.join(ctx.dir, DEMOTED_DIR);
  if (fs.existsSync(primary) && !fs.existsSync(path.join(primary, PROMOTED_MARKER))) fs.renameSync(primary, demoted);
  if (!fs.existsSync(primary)) fs.renameSync(replica, primary);
  if (fs.existsSync(demoted)) fs.renameSync(demoted, replica);
}

function record(state: StackState, step: RoleChange["step"]): void {
  state.operation!.step = step;
  saveState(state);
}

/**
 * The old primary's data, for the exchange: its processes ended; a directory that holds no whole
 * cluster is moved aside (never deleted), and replica <target> is then built anew by `up`.
 */
async function prepareFormerPrimary(ctx: LocalContext, state: StackState, steps: string[]): Promise<void> {
  const dir = dataDir(ctx, "primary");
  // Started again by hand after the promotion: stopped cleanly first (what it wrote since is rewound away).
  await stopNode(ctx, "primary");
  await killRemains(ctx, "primary");
  const cluster = clusterState(ctx, "primary", state.primaryBootstrapped);
  if (cluster === "complete" || !fs.existsSync(dir)) return;
  if (cluster === "none") {
    fs.rmSync(dir, { recursive: true, force: true }); // an empty directory
    return;
  }
  steps.push(`the old primary's directory held no whole cluster: moved aside to ${moveAside(ctx, dir)}`);
}

/** The old primary's data moved out of the way, never deleted: `failed-primary-<time>` in the stack directory. */
function moveAside(ctx: LocalContext, dir: string): string {
  const aside = path.join(ctx.dir, `failed-primary-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  fs.renameSync(dir, aside);
  return aside;
}

/** From the recorded step to the end: promote, exchange, start, re-attach the old primary. */
async function rollForward(ctx: LocalContext, state: StackState, steps: string[]): Promise<string> {
  const op = state.operation!;
  const target = op.target;
  const node = replicaName(target);
  if (op.step === "started") {
    if (!(await isPromoted(ctx, state, node, dataDir(ctx, node)))) {
      ctx.log(`promoting ${node}`);
      await promote(ctx, state, target);
      steps.push(`promoted ${node}`);
    }
    if (!runningPid(ctx, node)) await startNode(ctx, node);
    await ensureSlots(state, portOf(state, node));
    await stopNode(ctx, node);
    await prepareFormerPrimary(ctx, state, steps);
    writeServerFile(ctx, path.join(dataDir(ctx, node), PROMOTED_MARKER), `${op.kind} ${op.startedAt}\n`);
    markComplete(ctx, "primary", dataDir(ctx, node));
    if (fs.existsSync(dataDir(ctx, "primary"))) markComplete(ctx, node, dataDir(ctx, "primary"));
    record(state, "promoted");
  }
  if (op.step === "promoted") {
    exchangeDirectories(ctx, target);
    record(state, "swapped");
    steps.push(`exchanged the data directories: primary/ holds ${node}'s, ${node}/ the old primary's`);
  }
  // swapped: the new primary up on the primary's port, the pooler on it, the old primary re-attached.
  const primaryDir = dataDir(ctx, "primary");
  clearStandbySettings(ctx, primaryDir);
  writeNodeConf(ctx, state, "primary");
  if (!runningPid(ctx, "primary")) {
    await startNode(ctx, "primary");
    steps.push(`started the new primary on port ${state.ports.primary}`);
  }
  await ensureSlots(state, state.ports.primary);
  await resumePooler(ctx, state);
  steps.push("pooler resumed on the new primary (RESUME, RECONNECT)");
  fs.rmSync(path.join(primaryDir, PROMOTED_MARKER), { force: true });
  const formerPrimary = await reattach(ctx, state, target, steps);
  delete state.operation;
  saveState(state);
  return formerPrimary;
}

/**
 * The old primary's data (now in replica-<target>/) made a standby of the new primary by the shared
 * replica bootstrap (infra/topology/replicaBootstrap.ts, the Docker replicas' too): pg_rewind as
 * nb_replicator takes back whatever it wrote that the new primary never received (none after a
 * switchover); when it cannot, the script takes a base backup instead.
 */
async function reattach(ctx: LocalContext, state: StackState, target: number, steps: string[]): Promise<string> {
  const node = replicaName(target);
  const dir = dataDir(ctx, node);
  if (!fs.existsSync(dir)) return `no data left: ${node} is built anew by a base backup`;
  await stopNode(ctx, node);
  await killRemains(ctx, node);
  clearStaleLocks(ctx, node);
  try {
    // A former primary's directory is one without standby.signal (a re-run after a crash may find one).
    fs.rmSync(path.join(dir, "standby.signal"), { force: true });
    const log = await runReplicaBootstrap(ctx, state, target, `the re-attach of ${node}`);
    const how = /base backup taken/.test(log) ? "rebuilt" : /no rewind required/.test(log) ? "re-attached" : "rewound";
    // pg_rewind copied the source's configuration files: the replica's own back.
    fs.rmSync(path.join(dir, PROMOTED_MARKER), { force: true });
    writeNodeConf(ctx, state, node);
    markComplete(ctx, node);
    await startNode(ctx, node);
    if (how === "rebuilt") {
      steps.push(`${node} (the old primary) could not be rewound; taken anew by a base backup, slot ${replicaSlotName(target)}`);
      return `could not be rewound: ${node} is built anew by a base backup`;
    }
    steps.push(`${node} (the old primary) re-attached as a standby${how === "rewound" ? " after pg_rewind" : " (no rewind needed)"}, slot ${replicaSlotName(target)}`);
    return how === "rewound" ? `rewound and re-attached as ${node}` : `re-attached as ${node}`;
  } catch (e) {
    await stopNode(ctx, node);
    // Another cluster's data (a primary initdb'd anew, or replaced), or one that cannot be compared, is kept aside.
    const { refusal } = await discardableReplicaDir(ctx, state, target, dir);
    if (refusal) {
      const aside = moveAside(ctx, dir);
      ctx.log(`${node}: ${refusal}`);
      steps.push(`${node} (the old primary) is not known to be a copy of the new primary's cluster (${refusal}); moved aside to ${aside}, to be built anew by a base backup`);
      return `is not known to be a copy of the new primary's cluster: moved aside to ${aside}; ${node} is built anew by a base backup`;
    }
    ctx.log(`${node}: ${(e as Error).message.split("\n")[0]}; removing it for a base backup`);
    fs.rmSync(dir, { recursive: true, force: true });
    steps.push(`${node} (the old primary) could not be re-attached; removed, to be built anew by a base backup`);
    return `could not be re-attached: ${node} is built anew by a base backup`;
  }
}

/** A switchover that had not promoted its target yet: the old primary back, the pooler resumed. */
async function undoSwitchover(ctx: LocalContext, state: StackState, steps: string[]): Promise<void> {
  if (!runningPid(ctx, "primary")) {
    writeNodeConf(ctx, state, "primary");
    await startNode(ctx, "primary");
    steps.push("started the old primary again");
  }
  await resumePooler(ctx, state);
  const target = replicaName(state.operation!.target);
  delete state.operation;
  saveState(state);
  steps.push(`undid the switchover to ${target} before its promotion: the old primary stays primary`);
}

/**
 * Called under the stack's lock with a recorded operation: a switchover before its promotion is
 * undone (the old primary still holds every commit); past it, and any failover, is finished.
 */
export async function finishRoleChange(ctx: LocalContext, state: StackState): Promise<string[]> {
  const op = state.operation!;
  const steps: string[] = [];
  const node = replicaName(op.target);
  const promoted = op.step !== "started" || (await isPromoted(ctx, state, node, dataDir(ctx, node)));
  if (op.kind === "switchover" && !promoted) {
    await undoSwitchover(ctx, state, steps);
    return steps;
  }
  if (op.kind === "failover" && !promoted && runningPid(ctx, "primary")) {
    delete state.operation;
    saveState(state);
    return [`dropped the interrupted failover to ${node}: nothing was promoted and the primary runs again`];
  }
  ctx.log(`finishing the interrupted ${op.kind} to ${node} (step ${op.step})`);
  const formerPrimary = await rollForward(ctx, state, steps);
  return [...steps.map((s) => `${op.kind}: ${s}`), `finished the interrupted ${op.kind}: ${node}'s data is the primary's; the old primary ${formerPrimary}`];
}

// ---- the commands ------------------------------------------------------------------------

/** rollForward, whose failure says that the operation is recorded and how to finish it. */
async function finishing(ctx: LocalContext, state: StackState, steps: string[]): Promise<string> {
  try {
    return await rollForward(ctx, state, steps);
  } catch (e) {
    const op = state.operation;
    if (!op) throw e;
    throw new Error(`${op.kind} to ${replicaName(op.target)} stopped at step '${op.step}' (${(e as Error).message}); it is recorded in state.json: npx nbdb up --stack ${state.stack} finishes it.`);
  }
}

export interface RoleChangeOptions {
  readonly stack: string;
  readonly log?: (line: string) => void;
}

async function closeWithUp(opts: RoleChangeOptions, kind: RoleChange["kind"], target: number, formerPrimary: string, steps: string[]): Promise<RoleChangeResult> {
  // The rest is what `up` does anyway: every replica streaming from the new primary (one that
  // cannot is rebuilt), the pooler's config, outputs.json and pg_service.conf.
  const res = await up({ stack: opts.stack, bundles: false, log: opts.log });
  return { kind, promoted: replicaName(target), formerPrimary, steps: [...steps, ...res.changes.map((c) => `up: ${c}`)], outputs: res.outputs };
}

/**
 * Planned: writes paused at the pooler, the primary shut down cleanly (its walsenders send all of
 * its WAL first), the target confirmed past the shutdown checkpoint, then promoted: no committed
 * transaction is lost. Refused (nothing changed) unless the primary and the target run and stream.
 */
export async function switchover(opts: RoleChangeOptions & { readonly to?: string }): Promise<RoleChangeResult> {
  const ctx = localContext(opts.stack, opts.log ?? (() => undefined));
  requireStack(opts.stack);
  const done = await withStackLock(ctx, async () => {
    const state = requireStack(opts.stack);
    refuseIfBusy(state);
    if (state.ports.replicas.length === 0) throw new UserError(`stack '${opts.stack}' has no replica to switch over to; add one first: npx nbdb up --stack ${opts.stack} --replicas 1`);
    if (!runningPid(ctx, "primary")) {
      throw new UserError(`the primary of stack '${opts.stack}' is not running: a switchover needs it. Start it with npx nbdb up --stack ${opts.stack}, or, if it is lost, promote a replica: npx nbdb failover --stack ${opts.stack}`);
    }
    const rows = await replicationRows(state).catch((e: Error) => {
      throw new UserError(`the primary of stack '${opts.stack}' does not answer (${e.message}); nothing was changed. npx nbdb status --stack ${opts.stack} says more.`);
    });
    const healthy = state.ports.replicas.map((_, i) => i).filter((i) => runningPid(ctx, replicaName(i)) && rows.get(replicaApplicationName(i))?.healthy);
    let target: number;
    if (opts.to !== undefined) {
      target = parseReplicaNode(opts.to, state.ports.replicas.length, state.stack);
      if (!healthy.includes(target)) {
        throw new UserError(`${replicaName(target)} of stack '${opts.stack}' is not streaming from the primary, so it may miss commits; nothing was changed. Repair it with npx nbdb up --stack ${opts.stack}, or choose another (${healthy.map(replicaName).join(", ") || "none streams"}).`);
      }
    } else {
      if (healthy.length === 0) throw new UserError(`no replica of stack '${opts.stack}' streams from the primary; nothing was changed. Repair them with npx nbdb up --stack ${opts.stack}`);
      target = healthy.reduce((a, b) => (rows.get(replicaApplicationName(b))!.lagBytes < rows.get(replicaApplicationName(a))!.lagBytes ? b : a));
    }
    const steps: string[] = [];
    state.operation = { kind: "switchover", target, step: "started", startedAt: new Date().toISOString() };
    saveState(state);
    try {
      if (await pausePooler(ctx, state)) steps.push(`paused the pooler's ${DATABASE} pool (clients wait on their connections)`);
      ctx.log("shutting the primary down (its walsenders send every WAL record first)");
      await stopNode(ctx, "primary");
      const last = await controlData(ctx, dataDir(ctx, "primary"));
      if (last.state !== "shut down") throw new Error(`the primary did not shut down cleanly (pg_controldata: ${last.state})`);
      await waitReplayedPast(state, target, last.checkpoint);
      steps.push(`stopped the primary at its shutdown checkpoint ${last.checkpoint}; ${replicaName(target)} replayed past it`);
    } catch (e) {
      const undo: string[] = [];
      await undoSwitchover(ctx, state, undo);
      throw new UserError(`switchover to ${replicaName(target)} refused and undone (${undo.join("; ")}): ${(e as Error).message}`);
    }
    return { target, formerPrimary: await finishing(ctx, state, steps), steps };
  });
  return closeWithUp(opts, "switchover", done.target, done.formerPrimary, done.steps);
}

/**
 * The primary is gone (killed, its machine lost): the replica that received the most WAL is
 * promoted. Replicas are asynchronous: what the primary committed but no replica received is lost
 * (docs/switchover.md). Refused while the primary runs.
 */
export async function failover(opts: RoleChangeOptions): Promise<RoleChangeResult> {
  const ctx = localContext(opts.stack, opts.log ?? (() => undefined));
  requireStack(opts.stack);
  const done = await withStackLock(ctx, async () => {
    const state = requireStack(opts.stack);
    refuseIfBusy(state);
    const pid = runningPid(ctx, "primary");
    if (pid) {
      throw new UserError(
        `the primary of stack '${opts.stack}' is running (pid ${pid}, port ${state.ports.primary}): a failover is for a primary that is gone, and would lose what the replicas have not received. ` +
          `For a planned change of primary without loss: npx nbdb switchover --stack ${opts.stack} [--to replica-N]`,
      );
    }
    const positions: { index: number; lsn: bigint; text: string }[] = [];
    for (let i = 0; i < state.ports.replicas.length; i++) {
      if (!runningPid(ctx, replicaName(i))) continue;
      const p = await withSuperuser(state, portOf(state, replicaName(i)), async (c) =>
        (await c.query("SELECT pg_catalog.pg_is_in_recovery() AS standby, COALESCE(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())::text AS lsn")).rows[0],
      ).catch(() => undefined);
      if (p?.standby) positions.push({ index: i, lsn: lsnValue(p.lsn), text: p.lsn });
    }
    if (positions.length === 0) {
      throw new UserError(`no replica of stack '${opts.stack}' is running to be promoted; nothing was changed. If the primary's data directory is intact, npx nbdb up --stack ${opts.stack} starts it again.`);
    }
    const best = positions.reduce((a, b) => (b.lsn > a.lsn ? b : a));
    const steps = [`most advanced replica: ${replicaName(best.index)} (received up to ${best.text}; ${positions.map((p) => `${replicaName(p.index)} ${p.text}`).join(", ")})`];
    state.operation = { kind: "failover", target: best.index, step: "started", startedAt: new Date().toISOString() };
    saveState(state);
    // Everything it received is replayed before promotion ends; its receiver is stopped by the promotion.
    return { target: best.index, formerPrimary: await finishing(ctx, state, steps), steps };
  });
  return closeWithUp(opts, "failover", done.target, done.formerPrimary, done.steps);
}

/** The lines `nbdb switchover` and `nbdb failover` print. */
export function describeRoleChange(r: RoleChangeResult): string[] {
  return [
    ...r.steps.map((s) => `- ${s}`),
    `${r.kind} done: ${r.promoted}'s data is the primary's on ${r.outputs.primary.host}:${r.outputs.primary.port}; the old primary ${r.formerPrimary}.`,
    `the pooler ${r.outputs.pooler.host}:${r.outputs.pooler.port} serves the new primary; outputs.json and pg_service.conf are unchanged (roles keep their ports).`,
  ];
}
