// The local stack's lifecycle: `up` converges the topology (primary, replicas, pooler) to what was
// asked and reports what it changed; `down` stops it; `status` reports it.
import * as fs from "fs";
import * as path from "path";
import * as lockfile from "proper-lockfile";
import { REPO_BUNDLE_DIR } from "../../infra/bundles/catalog";
import { replicaApplicationName, replicaSlotName } from "../../infra/topology/replicaBootstrap";
import { bootstrapPrimary } from "./bootstrap";
import { convergeDatabase } from "./database";
import { MaintenanceStatus, maintenanceStatus } from "../ops/schedule";
import { ArchiveStatus, archiveStatus, ensureBackup } from "../ops/backup";
import { LocalContext, localContext } from "./context";
import { UserError } from "./errors";
import {
  NodeName,
  bootstrapReplica,
  dataDir,
  ensureServerDir,
  hasCluster,
  initPrimary,
  logFile,
  portOf,
  reloadNode,
  replicaName,
  runningPid,
  startNode,
  stopNode,
  withSuperuser,
  writeNodeConf,
} from "./postgresNode";
import { PoolCounts, poolCounts, poolerPid, reloadPooler, startPooler, stopPooler, writePoolerConfig } from "./pooler";
import { writePgServiceConf } from "./pgService";
import { LocalStackOutputs, StackState, loadState, newDataKey, newState, outputsFile, outputsOf, requireStack, saveState, writePrivate } from "./state";
import { freePort, portIsFree, run, waitFor } from "./system";

export const DEFAULT_REPLICAS = 2;
const STREAMING_TIMEOUT_MS = 30_000;

async function withStackLock<T>(ctx: LocalContext, fn: () => Promise<T>): Promise<T> {
  let release: () => Promise<void>;
  try {
    // A lock left by a killed run goes stale after 10 s and is taken over.
    release = await lockfile.lock(ctx.dir, { lockfilePath: path.join(ctx.dir, ".lock"), stale: 10_000, retries: { retries: 15, factor: 1, minTimeout: 1000 } });
  } catch {
    throw new UserError(`another nbdb command is working on stack '${ctx.stack}' (lock ${path.join(ctx.dir, ".lock")}); wait for it to finish and try again.`);
  }
  try {
    return await fn();
  } finally {
    await release().catch(() => undefined);
  }
}

function prepareStackDir(ctx: LocalContext): void {
  const root = process.getuid?.() === 0;
  fs.mkdirSync(ctx.dir, { recursive: true, mode: root ? 0o755 : 0o700 });
  ensureServerDir(ctx, path.join(ctx.dir, "log"));
}

/** The server user must reach the stack directory: every parent must be searchable by it. */
async function checkServerUserReaches(ctx: LocalContext): Promise<void> {
  await run("/bin/sh", ["-c", 'test -w "$1"', "sh", path.join(ctx.dir, "log")], { as: ctx.user }).catch(() => {
    throw new UserError(
      `the server user '${ctx.user.name}' cannot reach ${ctx.dir} (a parent directory is not searchable by it).\n` +
        `Keep the stacks somewhere it can reach: NBDB_HOME=/var/tmp/nbdb npx nbdb up`,
    );
  });
}

async function replicationRows(state: StackState): Promise<Map<string, { state: string; lagBytes: number; lagSeconds: number }>> {
  return withSuperuser(state, state.ports.primary, async (c) => {
    const res = await c.query(
      `SELECT application_name, state,
              COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn), 0)::float8 AS lag_bytes,
              COALESCE(EXTRACT(epoch FROM replay_lag), 0)::float8 AS lag_seconds
         FROM pg_catalog.pg_stat_replication`,
    );
    return new Map(res.rows.map((r) => [r.application_name, { state: r.state, lagBytes: Number(r.lag_bytes), lagSeconds: Number(r.lag_seconds) }]));
  });
}

async function waitStreaming(state: StackState, index: number): Promise<void> {
  await waitFor(`replica-${index} to stream from the primary`, STREAMING_TIMEOUT_MS, async () =>
    (await replicationRows(state)).get(replicaApplicationName(index))?.state === "streaming" ? true : undefined,
  );
}

/** 'ok', 'missing' or 'lost' (the primary no longer holds the WAL the replica needs). */
async function slotHealth(state: StackState, index: number): Promise<"ok" | "missing" | "lost"> {
  return withSuperuser(state, state.ports.primary, async (c) => {
    const r = await c.query("SELECT wal_status FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", [replicaSlotName(index)]);
    if (r.rowCount === 0) return "missing";
    return r.rows[0].wal_status === "lost" ? "lost" : "ok";
  });
}

async function dropSlot(state: StackState, index: number): Promise<void> {
  const slot = replicaSlotName(index);
  // The walsender of a replica just stopped may take a moment to release the slot.
  await waitFor(`slot ${slot} to be released`, 15_000, () =>
    withSuperuser(state, state.ports.primary, async (c) => {
      await c.query("SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", [slot]);
      return true;
    }),
  );
}

export interface UpOptions {
  readonly stack: string;
  /** Wanted replica count; an existing stack keeps its count when absent, a new one gets DEFAULT_REPLICAS. */
  readonly replicas?: number;
  /** Directory of SQL bundles to apply once the topology is up (default: the repository's sql/); false applies none. */
  readonly bundles?: string | false;
  readonly log?: (line: string) => void;
}

export interface UpResult {
  /** What `up` changed, one line each; empty when the stack already was as asked. */
  readonly changes: string[];
  readonly outputs: LocalStackOutputs;
}

/** Ports of nodes that are not running must be free now, before anything is touched. */
async function checkPortsFree(ctx: LocalContext, state: StackState, replicas: number): Promise<void> {
  const nodes: NodeName[] = ["primary", ...Array.from({ length: Math.min(replicas, state.ports.replicas.length) }, (_, i) => replicaName(i))];
  const wanted: { what: string; port: number }[] = nodes.filter((n) => !runningPid(ctx, n)).map((n) => ({ what: n, port: portOf(state, n) }));
  if (!poolerPid(ctx)) wanted.push({ what: "pgbouncer", port: state.ports.pooler });
  for (const { what, port } of wanted) {
    if (!(await portIsFree(port))) {
      throw new UserError(
        `port ${port}, kept for ${what} of stack '${ctx.stack}', is in use by another process.\n` +
          `Stop that process (find it with: ss -ltnp 'sport = :${port}'), or remove this stack (npx nbdb down --stack ${ctx.stack} --purge --yes) and bring it up again on new ports.`,
      );
    }
  }
}

async function newPort(state: StackState): Promise<number> {
  const taken = new Set([state.ports.primary, state.ports.pooler, ...state.ports.replicas]);
  for (;;) {
    const p = await freePort();
    if (!taken.has(p)) return p;
  }
}

async function convergePrimary(ctx: LocalContext, state: StackState, changes: string[]): Promise<void> {
  if (!hasCluster(ctx, "primary")) {
    if (state.primaryBootstrapped) {
      throw new UserError(
        `the primary's data directory ${dataDir(ctx, "primary")} is gone, but stack '${ctx.stack}' was built before: nbdb will not silently replace a database.\n` +
          `Restore the directory, or start over with: npx nbdb down --stack ${ctx.stack} --purge --yes`,
      );
    }
    ctx.log("initialising the primary (initdb)");
    await initPrimary(ctx, state);
    changes.push("initialised the primary");
  }
  if (!runningPid(ctx, "primary")) {
    writeNodeConf(ctx, "primary", state.ports.primary);
    ctx.log(`starting the primary on port ${state.ports.primary}`);
    await startNode(ctx, "primary");
    changes.push("started the primary");
  } else if (writeNodeConf(ctx, "primary", state.ports.primary)) {
    await reloadNode(ctx, "primary");
    changes.push("reloaded the primary's settings");
    const pending = await withSuperuser(state, state.ports.primary, async (c) =>
      (await c.query("SELECT name FROM pg_catalog.pg_settings WHERE pending_restart ORDER BY 1")).rows.map((r) => r.name as string),
    );
    if (pending.length > 0) {
      changes.push(`settings that take effect only after a restart changed (${pending.join(", ")}): npx nbdb down --stack ${ctx.stack} && npx nbdb up --stack ${ctx.stack}`);
    }
  }
  if (!state.primaryBootstrapped) {
    ctx.log("creating roles, the database and the pooler's auth lookup");
    await bootstrapPrimary(state);
    state.primaryBootstrapped = true;
    saveState(state);
    changes.push("created roles, database and schema");
  }
}

async function rebuildReplica(ctx: LocalContext, state: StackState, index: number, why: string): Promise<void> {
  ctx.log(`replica-${index}: ${why}; taking a base backup`);
  await stopNode(ctx, replicaName(index));
  await bootstrapReplica(ctx, state, index);
  await startNode(ctx, replicaName(index));
  await waitStreaming(state, index);
}

async function convergeReplica(ctx: LocalContext, state: StackState, index: number, changes: string[]): Promise<void> {
  const node = replicaName(index);
  if (state.ports.replicas[index] === undefined) {
    state.ports.replicas[index] = await newPort(state);
    saveState(state);
  }
  if (!hasCluster(ctx, node)) {
    await rebuildReplica(ctx, state, index, "new");
    changes.push(`created ${node} on port ${portOf(state, node)}`);
    return;
  }
  if (runningPid(ctx, node)) {
    if (writeNodeConf(ctx, node, portOf(state, node))) {
      await reloadNode(ctx, node);
      changes.push(`reloaded ${node}'s settings`);
    }
    return;
  }
  const slot = await slotHealth(state, index);
  if (slot !== "ok") {
    await rebuildReplica(ctx, state, index, slot === "lost" ? "the primary no longer holds the WAL it needs" : "its replication slot is missing");
    changes.push(`re-bootstrapped ${node} (slot ${slot})`);
    return;
  }
  writeNodeConf(ctx, node, portOf(state, node));
  ctx.log(`starting ${node} on port ${portOf(state, node)}`);
  try {
    await startNode(ctx, node);
    await waitStreaming(state, index);
    changes.push(`restarted ${node}`);
  } catch (e) {
    await rebuildReplica(ctx, state, index, `it could not catch up (${(e as Error).message.split("\n")[0]})`);
    changes.push(`re-bootstrapped ${node} (could not catch up)`);
  }
}

async function removeReplica(ctx: LocalContext, state: StackState, index: number, changes: string[]): Promise<void> {
  const node = replicaName(index);
  ctx.log(`removing ${node}`);
  await stopNode(ctx, node);
  await dropSlot(state, index);
  fs.rmSync(dataDir(ctx, node), { recursive: true, force: true });
  fs.rmSync(logFile(ctx, node), { force: true });
  state.ports.replicas.length = index;
  saveState(state);
  changes.push(`removed ${node}`);
}

async function convergePooler(ctx: LocalContext, state: StackState, changes: string[]): Promise<void> {
  const changed = writePoolerConfig(ctx, state);
  if (!poolerPid(ctx)) {
    ctx.log(`starting pgbouncer on port ${state.ports.pooler}`);
    await startPooler(ctx, state);
    changes.push("started pgbouncer");
  } else if (changed) {
    reloadPooler(ctx);
    changes.push("reloaded pgbouncer's settings");
  }
}

/** Bring the stack to the asked shape; on a healthy stack of that shape, change nothing. */
export async function up(opts: UpOptions): Promise<UpResult> {
  const ctx = localContext(opts.stack, opts.log ?? (() => undefined));
  prepareStackDir(ctx);
  await checkServerUserReaches(ctx);
  return withStackLock(ctx, async () => {
    // Created under the lock: two first `up`s of one stack must not each pick passwords and ports.
    const isNew = !loadState(opts.stack);
    if (isNew) {
      const primary = await freePort();
      let pooler = await freePort();
      while (pooler === primary) pooler = await freePort();
      saveState(newState(opts.stack, { primary, pooler }));
    }
    const state = loadState(opts.stack)!;
    // Asked for, else asked for last time (a first run killed halfway keeps its count), else the default.
    const replicas = opts.replicas ?? state.replicas ?? (isNew ? DEFAULT_REPLICAS : state.ports.replicas.length);
    await checkPortsFree(ctx, state, replicas);
    if (state.replicas !== replicas || !state.dataKey) {
      state.replicas = replicas;
      state.dataKey ||= newDataKey();
      saveState(state);
    }
    const changes: string[] = [];
    await convergePrimary(ctx, state, changes);
    changes.push(...(await ensureBackup(ctx, state)));
    for (let i = 0; i < replicas; i++) await convergeReplica(ctx, state, i, changes);
    for (let i = state.ports.replicas.length - 1; i >= replicas; i--) await removeReplica(ctx, state, i, changes);
    await convergePooler(ctx, state, changes);
    if (opts.bundles !== false) {
      changes.push(...(await convergeDatabase(outputsOf(state).connections, opts.bundles ?? REPO_BUNDLE_DIR, ctx.log)));
    }
    if (writePrivate(outputsFile(opts.stack), JSON.stringify(outputsOf(state), null, 2) + "\n")) changes.push("wrote outputs.json");
    if (writePgServiceConf(outputsOf(state))) changes.push("wrote pg_service.conf");
    if (writePgServiceConf(outputsOf(state))) changes.push("wrote pg_service.conf");
    return { changes, outputs: outputsOf(state) };
  });
}

export interface DownOptions {
  readonly stack: string;
  readonly purge?: boolean;
  readonly yes?: boolean;
  readonly log?: (line: string) => void;
}

/** Stop every process of the stack; with purge (and yes), delete its directory and all its data. */
export async function down(opts: DownOptions): Promise<void> {
  const state = requireStack(opts.stack);
  const ctx = localContext(opts.stack, opts.log ?? (() => undefined));
  if (opts.purge && !opts.yes) {
    throw new UserError(`--purge deletes every database of stack '${opts.stack}' in ${ctx.dir}. To do exactly that, add --yes.`);
  }
  await withStackLock(ctx, async () => {
    ctx.log("stopping pgbouncer");
    await stopPooler(ctx);
    for (let i = state.ports.replicas.length - 1; i >= 0; i--) {
      ctx.log(`stopping ${replicaName(i)}`);
      await stopNode(ctx, replicaName(i));
    }
    ctx.log("stopping the primary");
    await stopNode(ctx, "primary");
    if (opts.purge) {
      ctx.log(`removing ${ctx.dir}`);
      fs.rmSync(ctx.dir, { recursive: true, force: true });
    }
  });
}

export interface NodeStatus {
  readonly node: NodeName;
  readonly role: "primary" | "replica";
  readonly port: number;
  readonly pid: number | null;
  readonly running: boolean;
  readonly streaming: boolean | null;
  readonly lagBytes: number | null;
  readonly lagSeconds: number | null;
}

export interface StackStatus {
  readonly stack: string;
  readonly nodes: NodeStatus[];
  readonly pooler: { port: number; pid: number | null; running: boolean; pools: PoolCounts[] };
  /** Null while the primary is down. */
  readonly maintenance: MaintenanceStatus | null;
  /** WAL archiving into the backup repository; null while the primary is down. */
  readonly backup: ArchiveStatus | null;
}

export async function status(stack: string): Promise<StackStatus> {
  const state = requireStack(stack);
  const ctx = localContext(stack, () => undefined);
  const primaryPid = runningPid(ctx, "primary");
  const replication = primaryPid ? await replicationRows(state).catch(() => new Map()) : new Map();
  const nodes: NodeStatus[] = [
    { node: "primary", role: "primary", port: state.ports.primary, pid: primaryPid ?? null, running: !!primaryPid, streaming: null, lagBytes: null, lagSeconds: null },
  ];
  state.ports.replicas.forEach((port, i) => {
    const pid = runningPid(ctx, replicaName(i));
    const row = replication.get(replicaApplicationName(i));
    nodes.push({
      node: replicaName(i),
      role: "replica",
      port,
      pid: pid ?? null,
      running: !!pid,
      streaming: primaryPid ? row?.state === "streaming" : null,
      lagBytes: row ? row.lagBytes : null,
      lagSeconds: row ? row.lagSeconds : null,
    });
  });
  const pid = poolerPid(ctx);
  const pools = pid ? await poolCounts(state).catch(() => []) : [];
  const maintenance = primaryPid ? await maintenanceStatus(outputsOf(state).connections.admin).catch(() => null) : null;
  const backup = primaryPid ? await archiveStatus(state).catch(() => null) : null;
  return { stack, nodes, pooler: { port: state.ports.pooler, pid: pid ?? null, running: !!pid, pools }, maintenance, backup };
}
