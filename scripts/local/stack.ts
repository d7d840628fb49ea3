// The local stack's lifecycle: `up` converges the topology (primary, replicas, pooler) to what was
// asked and reports what it changed; `down` stops it; `status` reports it.
import * as fs from "fs";
import * as path from "path";
import * as lockfile from "proper-lockfile";
import { REPO_BUNDLE_DIR } from "../../infra/bundles/catalog";
import { replicaApplicationName, replicaSlotName } from "../../infra/topology/replicaBootstrap";
import { PLAN_STEP_IDS } from "../../infra/database/plan";
import { localDatabasePlan } from "./database";
import { MaintenanceStatus, maintenanceStatus } from "./schedule";
import { ArchiveStatus, archiveStatus, ensureBackup } from "./backupRepo";
import { LocalContext, localContext } from "./context";
import { UserError } from "../errors";
import {
  NodeName,
  bootstrapReplica,
  refuseOtherCluster,
  refuseReplacedPrimary,
  clusterState,
  dataDir,
  ensureServerDir,
  initPrimary,
  killRemains,
  lostPidFile,
  logFile,
  portOf,
  reloadNode,
  replicaName,
  runningPid,
  socketDir,
  socketFile,
  startNode,
  stopNode,
  withSuperuser,
  writeNodeConf,
} from "./postgresNode";
import { ensureSystem } from "./setup";
import { PoolCounts, poolCounts, poolerPid, poolerVersion, reloadPooler, startPooler, stopPooler, writePoolerConfig } from "./pooler";
import { writePgServiceConf } from "./pgService";
import { finishRoleChange } from "./switchover";
import { ExporterStatus, ensureExporters, exporterPid, exporterPort, exportersStatus, installedExporters, stopExporters } from "./monitoring";
import {
  LocalStackOutputs,
  StackState,
  addMissingPasswords,
  caFile,
  loadState,
  loadStateBackup,
  stackHome,
  newDataKey,
  newKeptPort,
  newState,
  outputsFile,
  outputsOf,
  requireStack,
  saveState,
  stateBackupFile,
  writePrivate,
} from "./state";
import { portIsFree, processesUsing, run, waitFor } from "./system";
import { POOLER_TLS_NAME, convergeTls, removeServerCert, waitPresenting } from "./tls";

export const DEFAULT_REPLICAS = 2;
const STREAMING_TIMEOUT_MS = 30_000;

export async function withStackLock<T>(ctx: LocalContext, fn: () => Promise<T>): Promise<T> {
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

// A walreceiver reports every wal_receiver_status_interval (10 s); silent for this long, it is not
// streaming, whatever the walsender's state says (a frozen replica's walsender still says 'streaming').
const MAX_REPLY_AGE_S = 30;

interface ReplicationRow {
  state: string;
  /** Streaming and heard from within MAX_REPLY_AGE_S. */
  healthy: boolean;
  lagBytes: number;
  lagSeconds: number;
}

export async function replicationRows(state: StackState): Promise<Map<string, ReplicationRow>> {
  return withSuperuser(state, state.ports.primary, async (c) => {
    const res = await c.query(
      `SELECT application_name, state,
              COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn), 0)::float8 AS lag_bytes,
              COALESCE(EXTRACT(epoch FROM replay_lag), 0)::float8 AS lag_seconds,
              COALESCE(EXTRACT(epoch FROM pg_catalog.now() - reply_time), 1e9)::float8 AS reply_age
         FROM pg_catalog.pg_stat_replication`,
    );
    return new Map(
      res.rows.map((r) => [
        r.application_name,
        { state: r.state, healthy: r.state === "streaming" && Number(r.reply_age) < MAX_REPLY_AGE_S, lagBytes: Number(r.lag_bytes), lagSeconds: Number(r.lag_seconds) },
      ]),
    );
  });
}

async function waitStreaming(state: StackState, index: number): Promise<void> {
  await waitFor(`replica-${index} to stream from the primary`, STREAMING_TIMEOUT_MS, async () =>
    (await replicationRows(state)).get(replicaApplicationName(index))?.healthy ? true : undefined,
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
  /** Issue a new CA and every certificate now, good or not. */
  readonly renewTls?: boolean;
  readonly log?: (line: string) => void;
  /** Server settings over the shared ones, kept for the stack's life; only for a new stack (tests: small WAL limits). */
  readonly settings?: Record<string, string | number>;
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
  for (const name of installedExporters()) {
    const port = exporterPort(state, name);
    if (port && !exporterPid(ctx, name)) wanted.push({ what: name, port });
  }
  for (const { what, port } of wanted) {
    if (!(await portIsFree(port))) {
      throw new UserError(
        `port ${port}, kept for ${what} of stack '${ctx.stack}', is in use by another process.\n` +
          `Stop that process (find it with: ss -ltnp 'sport = :${port}'), or remove this stack (npx nbdb down --stack ${ctx.stack} --purge --yes) and bring it up again on new ports.`,
      );
    }
  }
}

function newPort(state: StackState): Promise<number> {
  return newKeptPort([state.ports.primary, state.ports.pooler, ...state.ports.replicas]);
}

async function convergePrimary(ctx: LocalContext, state: StackState, changes: string[]): Promise<void> {
  const cluster = clusterState(ctx, "primary", state.primaryBootstrapped);
  if (cluster !== "complete") {
    if (state.primaryBootstrapped) {
      throw new UserError(
        `the primary's data directory ${dataDir(ctx, "primary")} is gone, but stack '${ctx.stack}' was built before: nbdb will not silently replace a database.\n` +
          `Restore the directory, or start over with: npx nbdb down --stack ${ctx.stack} --purge --yes`,
      );
    }
    ctx.log(cluster === "partial" ? "redoing the primary's initdb (a previous run was interrupted in it)" : "initialising the primary (initdb)");
    await initPrimary(ctx, state);
    changes.push(cluster === "partial" ? "redid the primary's interrupted initdb" : "initialised the primary");
  }
  if (lostPidFile(ctx, "primary")) {
    // PostgreSQL shuts itself down within a minute of losing its lock file: restart it cleanly now.
    ctx.log("the primary runs without its postmaster.pid; restarting it");
    await stopNode(ctx, "primary");
    changes.push("restarted the primary (its postmaster.pid was gone)");
  }
  if (!runningPid(ctx, "primary")) {
    writeNodeConf(ctx, state, "primary");
    ctx.log(`starting the primary on port ${state.ports.primary}`);
    await startNode(ctx, "primary");
    if (!changes.some((c) => c.startsWith("restarted the primary"))) changes.push("started the primary");
  } else if (writeNodeConf(ctx, state, "primary")) {
    await reloadNode(ctx, "primary");
    changes.push("reloaded the primary's settings");
    const pending = await withSuperuser(state, state.ports.primary, async (c) =>
      (await c.query("SELECT name FROM pg_catalog.pg_settings WHERE pending_restart ORDER BY 1")).rows.map((r) => r.name as string),
    );
    if (pending.length > 0) {
      changes.push(`settings that take effect only after a restart changed (${pending.join(", ")}): npx nbdb down --stack ${ctx.stack} && npx nbdb up --stack ${ctx.stack}`);
    }
  }
}

async function rebuildReplica(ctx: LocalContext, state: StackState, index: number, why: string): Promise<void> {
  ctx.log(`replica-${index}: ${why}; taking a base backup`);
  // Before the replica is stopped: one that holds another cluster's data goes on running on it.
  await refuseOtherCluster(ctx, state, index);
  await stopNode(ctx, replicaName(index));
  await killRemains(ctx, replicaName(index));
  // The walsender of what just ended (the replica, or an orphaned pg_basebackup) lets go of the slot
  // once it notices; the base backup needs the slot free.
  await waitFor(`slot ${replicaSlotName(index)} to be released`, 30_000, () =>
    withSuperuser(state, state.ports.primary, async (c) =>
      (await c.query("SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND active", [replicaSlotName(index)])).rowCount === 0 ? true : undefined,
    ),
  );
  await bootstrapReplica(ctx, state, index);
  await startNode(ctx, replicaName(index));
  await waitStreaming(state, index);
}

/** Takes the replica again when its slot is missing or lost (it can never catch up then); true when it did. */
async function rebuiltForSlot(ctx: LocalContext, state: StackState, index: number, changes: string[]): Promise<boolean> {
  const slot = await slotHealth(state, index);
  if (slot === "ok") return false;
  await rebuildReplica(ctx, state, index, slot === "lost" ? "the primary no longer holds the WAL it needs" : "its replication slot is missing");
  changes.push(`re-bootstrapped ${replicaName(index)} (slot ${slot})`);
  return true;
}

/**
 * A replica that runs is healthy only when its slot holds the WAL it needs and it streams (heard
 * from lately); one that does not get there within STREAMING_TIMEOUT_MS cannot catch up and is
 * taken again.
 */
async function ensureStreaming(ctx: LocalContext, state: StackState, index: number, changes: string[]): Promise<void> {
  const node = replicaName(index);
  if (await rebuiltForSlot(ctx, state, index, changes)) return;
  try {
    await waitStreaming(state, index);
  } catch (e) {
    await rebuildReplica(ctx, state, index, `it does not stream (${(e as Error).message.split("\n")[0]})`);
    changes.push(`re-bootstrapped ${node} (could not catch up)`);
  }
}

async function convergeReplica(ctx: LocalContext, state: StackState, index: number, changes: string[]): Promise<void> {
  const node = replicaName(index);
  if (state.ports.replicas[index] === undefined) {
    state.ports.replicas[index] = await newPort(state);
    saveState(state);
  }
  const cluster = clusterState(ctx, node);
  if (cluster !== "complete") {
    await rebuildReplica(ctx, state, index, cluster === "partial" ? "a previous base backup was interrupted" : "new");
    changes.push(cluster === "partial" ? `redid ${node}'s interrupted base backup` : `created ${node} on port ${portOf(state, node)}`);
    return;
  }
  if (lostPidFile(ctx, node)) {
    ctx.log(`${node} runs without its postmaster.pid; restarting it`);
    await stopNode(ctx, node);
  }
  if (runningPid(ctx, node)) {
    if (writeNodeConf(ctx, state, node)) {
      await reloadNode(ctx, node);
      changes.push(`reloaded ${node}'s settings`);
    }
    if (!fs.existsSync(socketFile(ctx, state, node))) {
      // Started before replicas had a socket (unix_socket_directories takes a restart): the pooler's read-only entry needs it.
      ctx.log(`restarting ${node}: it has no Unix socket for the pooler`);
      await stopNode(ctx, node);
      await startNode(ctx, node);
      changes.push(`restarted ${node} (a Unix socket for the pooler's read-only entry)`);
    }
    await ensureStreaming(ctx, state, index, changes);
    return;
  }
  if (await rebuiltForSlot(ctx, state, index, changes)) return;
  writeNodeConf(ctx, state, node);
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

/**
 * A replica streams with sslmode=verify-full against the stack's CA. One built before the stack had
 * TLS still holds a primary_conninfo without it (libpq's default, prefer: encrypted, unverified);
 * the keywords added at the end override earlier ones, and a reload restarts the stream with them.
 */
async function convergeReplicaTls(ctx: LocalContext, state: StackState, index: number, changes: string[]): Promise<void> {
  const node = replicaName(index);
  if (!runningPid(ctx, node)) return;
  const ca = caFile(state.stack);
  await withSuperuser(state, portOf(state, node), async (c) => {
    const current = (await c.query("SHOW primary_conninfo")).rows[0].primary_conninfo as string;
    if (/\bsslmode='?verify-full'?/.test(current) && (current.includes(`sslrootcert='${ca}'`) || current.includes(`sslrootcert=${ca}`))) return;
    const wanted = `${current} sslmode=verify-full sslrootcert='${ca.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
    const sql = (await c.query("SELECT pg_catalog.format('ALTER SYSTEM SET primary_conninfo = %L', $1::text) AS sql", [wanted])).rows[0].sql as string;
    await c.query(sql);
    await c.query("SELECT pg_catalog.pg_reload_conf()");
    changes.push(`${node} now streams from the primary with sslmode=verify-full`);
  });
}

async function removeReplica(ctx: LocalContext, state: StackState, index: number, changes: string[]): Promise<void> {
  const node = replicaName(index);
  ctx.log(`removing ${node}`);
  await stopNode(ctx, node);
  await dropSlot(state, index);
  fs.rmSync(dataDir(ctx, node), { recursive: true, force: true });
  fs.rmSync(logFile(ctx, node), { force: true });
  fs.rmSync(socketDir(ctx, node), { recursive: true, force: true });
  removeServerCert(ctx, node);
  state.ports.replicas.length = index;
  saveState(state);
  changes.push(`removed ${node}`);
}

async function convergePooler(ctx: LocalContext, state: StackState, changes: string[]): Promise<void> {
  const changed = writePoolerConfig(ctx, state);
  // A pooler started by another PgBouncer (a stack from before the upgrade to the supported
  // version) keeps running the old one, which a reload cannot change: restart it on this binary.
  const running = poolerPid(ctx) ? await poolerVersion(state).catch(() => undefined) : undefined;
  if (running && running !== ctx.bins.pgbouncerVersion) {
    ctx.log(`pgbouncer ${running} is running; restarting it as ${ctx.bins.pgbouncerVersion} (${ctx.bins.pgbouncer})`);
    await stopPooler(ctx);
    await startPooler(ctx, state);
    changes.push(`restarted pgbouncer: ${running} → ${ctx.bins.pgbouncerVersion}`);
    return;
  }
  if (!poolerPid(ctx)) {
    ctx.log(`starting pgbouncer on port ${state.ports.pooler}`);
    await startPooler(ctx, state);
    changes.push("started pgbouncer");
  } else if (changed) {
    reloadPooler(ctx);
    changes.push("reloaded pgbouncer's settings");
  }
}

/** True when the stack directory holds data or a server: what a missing state.json must never be taken as new over. */
function hasRemains(ctx: LocalContext): boolean {
  const nodes = fs.existsSync(ctx.dir) ? fs.readdirSync(ctx.dir).filter((d) => d === "primary" || /^replica-\d+$/.test(d)) : [];
  return nodes.some((d) => fs.readdirSync(path.join(ctx.dir, d)).length > 0) || processesUsing(ctx.dir).length > 0;
}

/**
 * The stack's state: made for a new stack; restored from its copy when state.json is missing or
 * damaged; never made anew over a stack that has data or runs (its passwords and data key would be
 * replaced, the running servers reconfigured, the encrypted columns lost).
 */
function stateForUp(ctx: LocalContext, opts: UpOptions, changes: string[], ports: { primary: number; pooler: number }): { state: StackState; isNew: boolean } {
  let state: StackState | undefined;
  let damaged: UserError | undefined;
  try {
    state = loadState(opts.stack);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    damaged = e;
  }
  if (state) return { state, isNew: false };
  const backup = loadStateBackup(opts.stack);
  if (backup) {
    saveState(backup);
    ctx.log(`state.json was ${damaged ? "damaged" : "missing"}; restored it from ${stateBackupFile(opts.stack)}`);
    changes.push(`restored state.json from ${path.basename(stateBackupFile(opts.stack))}`);
    return { state: backup, isNew: false };
  }
  if (damaged) throw damaged;
  if (hasRemains(ctx)) {
    throw new UserError(
      `stack '${opts.stack}' has data or running servers in ${ctx.dir}, but no state.json and no copy of it (${stateBackupFile(opts.stack)}): ` +
        `its passwords and data key are not known, so nbdb will not set the stack up as new over it (that would reconfigure the servers and lose the key of the encrypted columns).\n` +
        `Restore state.json from a backup of yours and run up again; or, if the data may go, delete the stack: npx nbdb down --stack ${opts.stack} --purge --yes`,
    );
  }
  const fresh = newState(opts.stack, ports);
  if (opts.settings) fresh.settings = { ...opts.settings };
  saveState(fresh);
  return { state: fresh, isNew: true };
}

/** Bring the stack to the asked shape; on a healthy stack of that shape, change nothing. */
export async function up(opts: UpOptions): Promise<UpResult> {
  // A fresh machine: install what is missing (root with apt), or name the command that does.
  const setup = await ensureSystem(opts.log ?? (() => undefined));
  const ctx = localContext(opts.stack, opts.log ?? (() => undefined));
  const home = stackHome();
  if (home.reason) ctx.log(home.reason);
  prepareStackDir(ctx);
  await checkServerUserReaches(ctx);
  return withStackLock(ctx, async () => {
    const changes: string[] = [];
    // Made under the lock: two first `up`s of one stack must not each pick passwords and ports.
    const primary = await newKeptPort();
    const pooler = await newKeptPort([primary]);
    const { state, isNew } = stateForUp(ctx, opts, changes, { primary, pooler });
    // A role the model gained since the stack was made gets its password now (convergeRoles creates it).
    if (addMissingPasswords(state)) changes.push("generated passwords for new login roles");
    // The copy too is healed: written again when it is missing or differs.
    saveState(state);
    // A switchover or failover a crash interrupted: finished (or undone) before anything else looks at the nodes.
    if (state.operation) changes.push(...(await finishRoleChange(ctx, state)));
    // A primary directory replaced by another cluster is named as such before anything uses it.
    await refuseReplacedPrimary(ctx, state);
    // Left by nbdb versions that passed the superuser's password to initdb in a file.
    fs.rmSync(path.join(ctx.dir, "log", ".initdb-pw"), { force: true });
    // Asked for, else asked for last time (a first run killed halfway keeps its count), else the default.
    const replicas = opts.replicas ?? state.replicas ?? (isNew ? DEFAULT_REPLICAS : state.ports.replicas.length);
    await checkPortsFree(ctx, state, replicas);
    if (!state.dataKey && state.primaryBootstrapped) {
      throw new UserError(
        `${path.join(ctx.dir, "state.json")} has no data key, but stack '${opts.stack}' holds data: a new key would make its encrypted columns unreadable.\n` +
          `Put the key back into state.json ("dataKey") and run up again.`,
      );
    }
    if (state.replicas !== replicas || !state.dataKey) {
      state.replicas = replicas;
      state.dataKey ||= newDataKey();
      saveState(state);
    }
    changes.push(...setup.installed.map((p) => `installed ${p}`));
    const nodes: NodeName[] = ["primary", ...Array.from({ length: replicas }, (_, i) => replicaName(i))];
    // Certificates first: the servers' settings and the replicas' base backups use them.
    const tls = convergeTls(ctx, [...nodes, POOLER_TLS_NAME], { renew: opts.renewTls });
    changes.push(...tls.changes);
    // A renewed certificate reaches a running server with a reload (clients stay connected), before
    // anything connects to it trusting a CA that may be new too.
    for (const node of nodes.filter((n) => tls.issued.includes(n) && runningPid(ctx, n))) {
      await reloadNode(ctx, node);
      await waitPresenting(ctx, node, portOf(state, node));
    }
    if (tls.issued.includes(POOLER_TLS_NAME) && poolerPid(ctx)) {
      reloadPooler(ctx);
      await waitPresenting(ctx, POOLER_TLS_NAME, state.ports.pooler);
    }
    await convergePrimary(ctx, state, changes);
    // Backups first: a restored stack's primary finishes its recovery (and rotates its passwords) there.
    changes.push(...(await ensureBackup(ctx, state)));
    // The database plan (infra/database/plan.ts) through its access step: the replicas and the
    // pooler need the roles and the database; the rest once the pooler is up.
    const plan = localDatabasePlan(state, { bundleDir: opts.bundles || REPO_BUNDLE_DIR, log: ctx.log });
    changes.push(...(await plan.through("access")));
    for (let i = 0; i < replicas; i++) {
      await convergeReplica(ctx, state, i, changes);
      await convergeReplicaTls(ctx, state, i, changes);
    }
    // The pooler first: its read-only entry lets go of a replica (a reload) before the replica stops.
    await convergePooler(ctx, state, changes);
    for (let i = state.ports.replicas.length - 1; i >= replicas; i--) await removeReplica(ctx, state, i, changes);
    if (opts.bundles !== false) {
      changes.push(...(await plan.through(PLAN_STEP_IDS[PLAN_STEP_IDS.length - 1])));
    }
    // Done means streaming: a replica that stopped streaming meanwhile (the primary restarted) is waited for.
    for (let i = 0; i < replicas; i++) await ensureStreaming(ctx, state, i, changes);
    // Last: nb_monitor and its metric function exist by now.
    changes.push(...(await ensureExporters(ctx, state)));
    if (writePrivate(outputsFile(opts.stack), JSON.stringify(outputsOf(state), null, 2) + "\n")) changes.push("wrote outputs.json");
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

/** The nodes whose data directories the stack holds, replicas from the highest down. */
function nodesOnDisk(ctx: LocalContext): NodeName[] {
  const replicas = fs.existsSync(ctx.dir)
    ? fs.readdirSync(ctx.dir).filter((d) => /^replica-\d+$/.test(d)).map((d) => Number(d.slice("replica-".length)))
    : [];
  return [...replicas.sort((a, b) => b - a).map(replicaName), "primary"];
}

/**
 * Stop every process of the stack; with purge (and yes), delete its directory and all its data.
 * Works without state.json (it finds the servers by their data directories), and never deletes a
 * directory a process still works in.
 */
export async function down(opts: DownOptions): Promise<void> {
  const ctx = localContext(opts.stack, opts.log ?? (() => undefined));
  if (!fs.existsSync(ctx.dir)) requireStack(opts.stack);
  if (opts.purge && !opts.yes) {
    throw new UserError(`--purge deletes every database of stack '${opts.stack}' in ${ctx.dir}. To do exactly that, add --yes.`);
  }
  await withStackLock(ctx, async () => {
    await stopExporters(ctx);
    ctx.log("stopping pgbouncer");
    await stopPooler(ctx);
    for (const node of nodesOnDisk(ctx)) {
      ctx.log(`stopping ${node}`);
      await stopNode(ctx, node);
      // An initdb or base backup a killed `up` left running.
      if (!runningPid(ctx, node) && clusterState(ctx, node) === "partial") await killRemains(ctx, node);
    }
    const left = processesUsing(ctx.dir);
    if (left.length > 0) {
      throw new UserError(
        `processes still work in ${ctx.dir}: ${left.map((p) => `pid ${p.pid} (${p.argv.join(" ").slice(0, 80)})`).join("; ")}. ` +
          `Nothing was deleted. Stop them and run the command again.`,
      );
    }
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
  readonly pooler: { port: number; pid: number | null; running: boolean; version: string; pools: PoolCounts[] };
  /** Null while the primary is down. */
  readonly maintenance: MaintenanceStatus | null;
  /** What is wrong, one line each (a node down, a replica not streaming); empty when healthy. `nbdb status` exits 1 unless empty. */
  readonly problems: string[];
  /** WAL archiving into the backup repository; null while the primary is down. */
  readonly backup: ArchiveStatus | null;
  /** The metrics exporters and their URLs (none where Debian's exporters are not installed). */
  readonly monitoring: ExporterStatus[];
}

export async function status(stack: string): Promise<StackStatus> {
  const state = requireStack(stack);
  const ctx = localContext(stack, () => undefined);
  const problems: string[] = [];
  if (state.operation) problems.push(`a ${state.operation.kind} to ${replicaName(state.operation.target)} was interrupted (started ${state.operation.startedAt}); npx nbdb up finishes or undoes it`);
  const primaryPid = runningPid(ctx, "primary");
  if (!primaryPid) problems.push("the primary is not running");
  else if (lostPidFile(ctx, "primary")) problems.push("the primary runs without its postmaster.pid (it will shut itself down; npx nbdb up restarts it)");
  let replication: Map<string, ReplicationRow> | undefined;
  if (primaryPid) {
    replication = await replicationRows(state).catch((e: Error) => {
      problems.push(`the primary does not answer (${e.message})`);
      return undefined;
    });
  }
  const nodes: NodeStatus[] = [
    { node: "primary", role: "primary", port: state.ports.primary, pid: primaryPid ?? null, running: !!primaryPid, streaming: null, lagBytes: null, lagSeconds: null },
  ];
  state.ports.replicas.forEach((port, i) => {
    const node = replicaName(i);
    const pid = runningPid(ctx, node);
    const row = replication?.get(replicaApplicationName(i));
    const streaming = replication ? !!row?.healthy : null;
    if (!pid) problems.push(`${node} is not running`);
    else if (streaming === false) problems.push(`${node} is not streaming from the primary${row ? ` (walsender ${row.state}, not heard from lately)` : ""}`);
    if (pid && lostPidFile(ctx, node)) problems.push(`${node} runs without its postmaster.pid`);
    nodes.push({ node, role: "replica", port, pid: pid ?? null, running: !!pid, streaming, lagBytes: row ? row.lagBytes : null, lagSeconds: row ? row.lagSeconds : null });
  });
  const pid = poolerPid(ctx);
  if (!pid) problems.push("pgbouncer is not running");
  const pools = pid ? await poolCounts(state).catch(() => []) : [];
  // The running pooler's own word when it answers, else the binary's.
  const version = (pid ? await poolerVersion(state).catch(() => undefined) : undefined) ?? ctx.bins.pgbouncerVersion;
  const maintenance = primaryPid ? await maintenanceStatus(outputsOf(state).connections.migrator).catch(() => null) : null;
  const backup = primaryPid ? await archiveStatus(state).catch(() => null) : null;
  const monitoring = exportersStatus(ctx, state);
  for (const e of monitoring.filter((x) => !x.running)) problems.push(`${e.name} is not running (npx nbdb up --stack ${stack} starts it)`);
  return { stack, nodes, pooler: { port: state.ports.pooler, pid: pid ?? null, running: !!pid, version, pools }, maintenance, backup, monitoring, problems };
}
