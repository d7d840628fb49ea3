// One PostgreSQL server of a local stack: its data directory, settings, process and lifecycle.
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { withClient } from "../db";
import { HbaAccess, renderConf, renderHba, serverSettings } from "../../infra/topology/postgresSettings";
import { LoginRoleName, POOLER_ONLY_ROLES } from "../../schema/roles";
import { UserError } from "../errors";
import { REPLICATION_USER, ReplicaBootstrap, replicaBootstrapScript, replicaIdentityCheckScript } from "../../infra/topology/replicaBootstrap";
import { LocalContext, bin, nodeSizing, replicaLimit } from "./context";
import { DATABASE } from "../../schema/roles";
import { HOST, SUPERUSER, StackState, caFile, clientSsl } from "./state";
import { certFile, keyFile } from "./tls";
import { ProcessInfo, chownToServer, processAlive, processesUsing, run, signal, waitFor } from "./system";
import { scramSha256Verifier } from "../../infra/topology/scram";
import { archiveOption } from "./pgbackrest";
import { BACKUP_ROLE } from "../../infra/topology/pgbackrest";

export type NodeName = "primary" | `replica-${number}`;


export function replicaName(index: number): NodeName {
  return `replica-${index}`;
}

export function dataDir(ctx: LocalContext, node: NodeName): string {
  return path.join(ctx.dir, node);
}

export function logFile(ctx: LocalContext, node: NodeName): string {
  return path.join(ctx.dir, "log", `${node}.log`);
}

export function portOf(state: StackState, node: NodeName): number {
  if (node === "primary") return state.ports.primary;
  return state.ports.replicas[Number(node.slice("replica-".length))];
}

// Written once a data directory is whole: initdb (and the superuser's password) done, or the base
// backup taken. PG_VERSION alone proves nothing: initdb writes it first, and a killed initdb or
// pg_basebackup leaves a directory that holds it but no usable cluster.
const COMPLETE_MARKER: Record<"primary" | "replica", string> = { primary: "nbdb-initdb.done", replica: "nbdb-basebackup.done" };

function markerOf(node: NodeName): string {
  return COMPLETE_MARKER[node === "primary" ? "primary" : "replica"];
}

/**
 * 'complete', 'partial' (an interrupted initdb or base backup: nothing in it is data) or 'none'.
 * `builtBefore`: the stack recorded this node as built (stacks made before the marker existed).
 */
export function clusterState(ctx: LocalContext, node: NodeName, builtBefore = false): "none" | "partial" | "complete" {
  const dir = dataDir(ctx, node);
  if (fs.existsSync(path.join(dir, markerOf(node)))) return "complete";
  if (!fs.existsSync(path.join(dir, "PG_VERSION"))) return fs.existsSync(dir) && fs.readdirSync(dir).length > 0 ? "partial" : "none";
  if (builtBefore) return "complete";
  // A replica of a stack made before the marker: pg_basebackup writes standby.signal at its end.
  if (node !== "primary" && fs.existsSync(path.join(dir, "standby.signal")) && fs.existsSync(path.join(dir, "global", "pg_control"))) return "complete";
  return "partial";
}

export function hasCluster(ctx: LocalContext, node: NodeName, builtBefore = false): boolean {
  return clusterState(ctx, node, builtBefore) === "complete";
}

/** Mark a whole data directory as one of `node`'s role (in `dir`, by default the node's own). */
export function markComplete(ctx: LocalContext, node: NodeName, dir = dataDir(ctx, node)): void {
  writeServerFile(ctx, path.join(dir, markerOf(node)), `${new Date().toISOString()}\n`);
}

/** The postmaster's pid from postmaster.pid, when that process is alive and works in the data directory. */
function pidFromFile(ctx: LocalContext, node: NodeName): number | undefined {
  const pidFile = path.join(dataDir(ctx, node), "postmaster.pid");
  if (!fs.existsSync(pidFile)) return undefined;
  const pid = Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]);
  return processAlive(pid, "postgres") ? pid : undefined;
}

/** Every process working in or on the node's data directory (servers, initdb, pg_basebackup). */
export function nodeProcesses(ctx: LocalContext, node: NodeName): ProcessInfo[] {
  return processesUsing(dataDir(ctx, node));
}

/**
 * The postmaster's pid when it is running, else undefined. Found by its pid file, and without one
 * (deleted, or the server started by hand) by the process working in the data directory whose
 * parent does not: the postmaster; its children share its directory.
 */
export function runningPid(ctx: LocalContext, node: NodeName): number | undefined {
  const fromFile = pidFromFile(ctx, node);
  if (fromFile) return fromFile;
  const dir = path.resolve(dataDir(ctx, node));
  const servers = nodeProcesses(ctx, node).filter((p) => p.cwd === dir && path.basename(p.argv[0] ?? "") === "postgres");
  const pids = new Set(servers.map((p) => p.pid));
  return servers.find((p) => !pids.has(p.ppid))?.pid;
}

/** True when the node runs but its postmaster.pid is gone (PostgreSQL shuts itself down within a minute then). */
export function lostPidFile(ctx: LocalContext, node: NodeName): boolean {
  return !pidFromFile(ctx, node) && runningPid(ctx, node) !== undefined;
}

/** Make a directory the server user owns with mode 0700 (PostgreSQL insists on it for data). */
export function ensureServerDir(ctx: LocalContext, dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  chownToServer(dir, ctx.user);
}

export function writeServerFile(ctx: LocalContext, file: string, content: string): boolean {
  if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === content) return false;
  fs.writeFileSync(file, content, { mode: 0o600 });
  chownToServer(file, ctx.user);
  return true;
}

/**
 * Write the node's settings (nbdb.conf, included from postgresql.conf). Returns true when they
 * changed, so a running server needs a reload.
 */
export function writeNodeConf(ctx: LocalContext, state: StackState, node: NodeName): boolean {
  const dir = dataDir(ctx, node);
  const main = path.join(dir, "postgresql.conf");
  const include = "include = 'nbdb.conf'";
  const mainText = fs.readFileSync(main, "utf8");
  if (!mainText.includes(include)) writeServerFile(ctx, main, `${mainText}\n# neuralblitz-db settings\n${include}\n`);
  const settings = {
    ...serverSettings(nodeSizing(), replicaLimit(), {
      ...(hasPgCron(ctx) ? { pgCron: { database: DATABASE } } : {}),
      tls: { certFile: certFile(ctx, node), keyFile: keyFile(ctx, node) },
      archive: archiveOption(ctx, dir),
    }),
    ...state.settings,
    listen_addresses: HOST,
    port: portOf(state, node),
    // Each node's socket is for the pooler alone: a directory only the server user can enter (the
    // replicas' serve the pooler's read-only entry).
    unix_socket_directories: socketDir(ctx, node),
    cluster_name: `nbdb-${ctx.stack}-${node}`,
  };
  ensureServerDir(ctx, primarySocketDir(ctx));
  ensureServerDir(ctx, socketDir(ctx, node));
  const confChanged = writeServerFile(ctx, path.join(dir, "nbdb.conf"), renderConf(settings));
  const hbaChanged = writeServerFile(ctx, path.join(dir, "pg_hba.conf"), renderHba([`${HOST}/32`], REPLICATION_USER, LOCAL_HBA_ACCESS));
  return confChanged || hbaChanged;
}

/**
 * Locally the pooler reaches the primary over a Unix socket in the stack directory, so the pooled
 * roles are admitted there only and refused over TCP; database `postgres` admits the superuser only.
 */
export const LOCAL_HBA_ACCESS: HbaAccess = {
  poolerOnly: { roles: POOLER_ONLY_ROLES, from: "local" },
  // The pooler's read-only entry reaches the replicas (or, without any, the primary) over their sockets.
  socketLogins: ["nb_readonly" satisfies LoginRoleName],
  // The replica bootstrap creates its slot from database postgres; pgBackRest's role works there.
  postgresDatabaseUsers: [SUPERUSER, REPLICATION_USER, BACKUP_ROLE],
};

/** The directory of a node's Unix socket: the primary's is `run`, a replica's `run/replica-<i>` (both mode 0700, the server user's). */
export function socketDir(ctx: LocalContext, node: NodeName): string {
  if (node === "primary") return primarySocketDir(ctx);
  const dir = path.join(primarySocketDir(ctx), node);
  if (Buffer.byteLength(dir) + 17 > 107) {
    throw new UserError(`the stack directory ${ctx.dir} is too long for ${node}'s Unix socket (at most ~80 bytes); use a shorter NBDB_HOME, e.g. NBDB_HOME=/var/tmp/nbdb`);
  }
  return dir;
}

/** The socket file a running node listens on. */
export function socketFile(ctx: LocalContext, state: StackState, node: NodeName): string {
  return path.join(socketDir(ctx, node), `.s.PGSQL.${portOf(state, node)}`);
}

/** The directory of the primary's Unix socket (mode 0700, the server user's): only the pooler uses it. */
export function primarySocketDir(ctx: LocalContext): string {
  const dir = path.join(ctx.dir, "run");
  // sun_path holds 107 bytes: "<dir>/.s.PGSQL.<port>" must fit.
  if (Buffer.byteLength(dir) + 17 > 107) {
    throw new UserError(`the stack directory ${ctx.dir} is too long for the primary's Unix socket (at most ~90 bytes); use a shorter NBDB_HOME, e.g. NBDB_HOME=/var/tmp/nbdb`);
  }
  return dir;
}

/** Debian's postgresql-15-cron installed next to the server: then maintenance is scheduled in the database. */
export function hasPgCron(ctx: LocalContext): boolean {
  return fs.existsSync(path.join(path.dirname(ctx.bins.pgBinDir), "lib", "pg_cron.so"));
}

/**
 * End whatever still works on a node's data directory: a server of a half-made cluster, or an
 * initdb or pg_basebackup left running by a killed `up`. Only for a directory about to be redone.
 */
export async function killRemains(ctx: LocalContext, node: NodeName): Promise<void> {
  const left = nodeProcesses(ctx, node);
  if (left.length === 0) return;
  ctx.log(`${node}: ending what a previous run left working on it (${left.map((p) => `${p.pid} ${path.basename(p.argv[0] ?? "?")}`).join(", ")})`);
  for (const p of left) {
    signal(p.pid, "SIGCONT");
    signal(p.pid, "SIGKILL");
  }
  await waitFor(`the processes left on ${dataDir(ctx, node)} to exit`, 30_000, async () => (nodeProcesses(ctx, node).length === 0 ? true : undefined));
}

export async function initPrimary(ctx: LocalContext, state: StackState): Promise<void> {
  const dir = dataDir(ctx, "primary");
  // A directory without the marker is an initdb that never finished: nothing in it is data.
  await killRemains(ctx, "primary");
  fs.rmSync(dir, { recursive: true, force: true });
  // Written by nbdb before the password left files: a killed run left it behind.
  fs.rmSync(path.join(ctx.dir, "log", ".initdb-pw"), { force: true });
  ensureServerDir(ctx, dir);
  // No password file: initdb with trust (pg_hba.conf is replaced below, before the server ever
  // starts), then the superuser's SCRAM verifier through a single-user backend's standard input.
  await run(
    bin(ctx, "initdb"),
    [`--pgdata=${dir}`, `--username=${SUPERUSER}`, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums"],
    { as: ctx.user },
  );
  writeNodeConf(ctx, state, "primary");
  const verifier = scramSha256Verifier(state.passwords[SUPERUSER]);
  await run(bin(ctx, "postgres"), ["--single", "-D", dir, "-c", "shared_preload_libraries=", "-c", "log_statement=none", "postgres"], {
    as: ctx.user,
    input: `ALTER ROLE ${SUPERUSER} PASSWORD '${verifier}'\n`,
    describe: "setting the superuser's password (postgres --single)",
  });
  markComplete(ctx, "primary");
}

/** How replica `index` of the local stack reaches its primary. */
function replicaOf(state: StackState, index: number): ReplicaBootstrap {
  return { primaryHost: HOST, primaryPort: state.ports.primary, replicationUser: REPLICATION_USER, index, caFile: caFile(state.stack) };
}

/** The environment the shared replica scripts run in: the data directory, the replication password, the server's binaries. */
function replicaScriptEnv(ctx: LocalContext, state: StackState, dir: string): NodeJS.ProcessEnv {
  return { PGDATA: dir, PGPASSWORD: state.passwords.nb_replicator, PATH: `${ctx.bins.pgBinDir}:${process.env.PATH}` };
}

/**
 * Whether `dir` may be discarded to make replica `index` anew from the primary: it holds no whole
 * cluster, or a copy of the primary's (the same database system identifier). Else `refusal` says
 * why (another cluster's data, or a primary that cannot be asked). The comparison is the shared
 * one of infra/topology/replicaBootstrap.ts, the Docker replicas' too.
 */
export async function discardableReplicaDir(ctx: LocalContext, state: StackState, index: number, dir: string): Promise<{ refusal?: string }> {
  try {
    await run("/bin/sh", ["-c", replicaIdentityCheckScript(replicaOf(state, index))], { as: ctx.user, env: replicaScriptEnv(ctx, state, dir), describe: `the system identifier check of ${replicaName(index)}` });
    return {};
  } catch (e) {
    return { refusal: (e as Error).message.replace(/^.*? failed: /, "") };
  }
}

/** What pg_controldata says of the cluster in `dir` (readable while the server runs). */
export async function controlData(ctx: LocalContext, dir: string): Promise<{ state: string; checkpoint: string; systemIdentifier: string }> {
  const { stdout } = await run(bin(ctx, "pg_controldata"), ["-D", dir], { as: ctx.user, env: { LC_ALL: "C", LANG: "C" } });
  const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, "m").exec(stdout)?.[1].trim() ?? "";
  return { state: field("Database cluster state"), checkpoint: field("Latest checkpoint location"), systemIdentifier: field("Database system identifier") };
}

/** What to do when replica `index`'s data is another cluster's than the primary's: the one advice of both refusals below. */
function otherClusterAdvice(ctx: LocalContext, index: number): string {
  return (
    `On stack '${ctx.stack}': to make ${replicaName(index)}'s data the primary's, stop the primary (pg_ctl stop -D ${dataDir(ctx, "primary")}; ` +
    `${replicaName(index)} must run) and run npx nbdb failover --stack ${ctx.stack}; if the primary's data is really meant, delete ${dataDir(ctx, replicaName(index))} and run npx nbdb up --stack ${ctx.stack}.`
  );
}

/**
 * Refuses (UserError, nothing changed) to go on when the primary's data directory holds another
 * cluster than the stack's whole replicas (it was replaced, e.g. by an initdb made outside nbdb).
 * Both directories are the stack's own, so their control files are compared directly, before
 * anything connects to the primary: its roles and schema may not exist, and what would fail
 * first (the database plan) would name the wrong problem.
 */
export async function refuseReplacedPrimary(ctx: LocalContext, state: StackState): Promise<void> {
  const replicas = state.ports.replicas.map((_, i) => i).filter((i) => hasCluster(ctx, replicaName(i)));
  if (replicas.length === 0 || !hasCluster(ctx, "primary", state.primaryBootstrapped)) return;
  const primaryId = (await controlData(ctx, dataDir(ctx, "primary"))).systemIdentifier;
  for (const i of replicas) {
    const own = (await controlData(ctx, dataDir(ctx, replicaName(i)))).systemIdentifier;
    if (own === primaryId) continue;
    throw new UserError(
      `the primary's data directory ${dataDir(ctx, "primary")} holds another cluster than ${replicaName(i)} (the primary's database system identifier is ${primaryId}, ` +
        `${replicaName(i)}'s ${own}): it was replaced after the stack was built, and ${replicaName(i)} may hold the last copy of the stack's data. Nothing was changed.\n` +
        otherClusterAdvice(ctx, i),
    );
  }
}

/** Refuses (UserError, nothing changed) to make replica `index` anew when its directory holds another cluster's data. */
export async function refuseOtherCluster(ctx: LocalContext, state: StackState, index: number): Promise<void> {
  const { refusal } = await discardableReplicaDir(ctx, state, index, dataDir(ctx, replicaName(index)));
  if (!refusal) return;
  throw new UserError(`${refusal}\n${otherClusterAdvice(ctx, index)}`);
}

/**
 * Take a base backup of the primary into the replica's data directory (new, partial, or a copy of
 * the primary's the replica cannot go on from); refused when it holds another cluster's data.
 */
export async function bootstrapReplica(ctx: LocalContext, state: StackState, index: number): Promise<void> {
  const node = replicaName(index);
  const dir = dataDir(ctx, node);
  await refuseOtherCluster(ctx, state, index);
  // A pg_basebackup left by a killed run still holds the slot: end it first.
  await killRemains(ctx, node);
  fs.rmSync(dir, { recursive: true, force: true });
  ensureServerDir(ctx, dir);
  await runReplicaBootstrap(ctx, state, index, `the base backup of ${node}`);
  writeNodeConf(ctx, state, node);
  markComplete(ctx, node);
}

/**
 * The shared replica bootstrap (infra/topology/replicaBootstrap.ts) on replica `index`'s data
 * directory, as the server user: a base backup into an empty one, a rewind of a former primary's.
 * Its output; it rejects when the script refuses.
 */
export async function runReplicaBootstrap(ctx: LocalContext, state: StackState, index: number, what: string): Promise<string> {
  const r = await run("/bin/sh", ["-c", replicaBootstrapScript(replicaOf(state, index))], {
    as: ctx.user,
    env: replicaScriptEnv(ctx, state, dataDir(ctx, replicaName(index))),
    timeoutMs: 30 * 60_000,
    describe: `${what} (infra/topology/replicaBootstrap.ts)`,
  });
  return r.stdout + r.stderr;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Pids of the server processes of a node, found by the cluster_name in their process titles. */
function clusterProcesses(ctx: LocalContext, node: NodeName): number[] {
  const title = `postgres: nbdb-${ctx.stack}-${node}:`;
  const dir = fs.existsSync(dataDir(ctx, node)) ? fs.realpathSync(dataDir(ctx, node)) : path.resolve(dataDir(ctx, node));
  return fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      if (!fs.readFileSync(`/proc/${d}/cmdline`, "utf8").startsWith(title)) return false;
    } catch {
      return false;
    }
    // The same stack name in another NBDB_HOME has the same titles: a server process works in its
    // own data directory (PostgreSQL chdirs there), so that tells them apart. One that cannot be
    // looked at (another user's) is counted: waiting is the safe side.
    try {
      return fs.realpathSync(`/proc/${d}/cwd`) === dir;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code !== "ENOENT";
    }
  }).map(Number);
}

/**
 * After a postmaster was killed, its pid lingers until reaped and its children until they notice;
 * PostgreSQL refuses to start while either is there, so wait for them to go.
 */
async function waitForRemainsOf(ctx: LocalContext, node: NodeName): Promise<void> {
  const pidFile = path.join(dataDir(ctx, node), "postmaster.pid");
  const old = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]) : 0;
  await waitFor(`the processes of the previous ${node} server to exit`, 30_000, async () =>
    (old > 0 && pidExists(old)) || clusterProcesses(ctx, node).length > 0 ? undefined : true,
  );
}

/**
 * Remove the lock files a dead server of this node left: its data directory's postmaster.pid and
 * its socket directory's `.s.PGSQL.<port>.lock`. PostgreSQL keeps such a lock while the pid in it
 * exists, and a SIGKILLed postmaster stays a zombie until its parent (the system's init) reaps it,
 * so a start, or pg_rewind's single-user crash recovery, right after a crash would be refused. Only
 * called once no process works in the data directory (waitForRemainsOf/killRemains), so no backend
 * of the dead server still holds its shared memory; a lock whose pid is a live postgres stays.
 */
export function clearStaleLocks(ctx: LocalContext, node: NodeName): void {
  const locks = [path.join(dataDir(ctx, node), "postmaster.pid")];
  const dir = socketDir(ctx, node);
  if (fs.existsSync(dir)) locks.push(...fs.readdirSync(dir).filter((n) => /^\.s\.PGSQL\.\d+\.lock$/.test(n)).map((n) => path.join(dir, n)));
  for (const lock of locks.filter((f) => fs.existsSync(f))) {
    const pid = Number((fs.readFileSync(lock, "utf8").split("\n")[0] ?? "").trim());
    if (processAlive(pid, "postgres")) continue;
    ctx.log(`${node}: removing ${lock}, left by a server that is gone (pid ${pid})`);
    fs.rmSync(lock, { force: true });
    if (lock.endsWith(".lock")) fs.rmSync(lock.slice(0, -".lock".length), { force: true });
  }
}

export async function startNode(ctx: LocalContext, node: NodeName): Promise<void> {
  await waitForRemainsOf(ctx, node);
  clearStaleLocks(ctx, node);
  await run(bin(ctx, "pg_ctl"), ["start", `--pgdata=${dataDir(ctx, node)}`, `--log=${logFile(ctx, node)}`, "--wait", "--timeout=120"], {
    as: ctx.user,
    timeoutMs: 130_000,
  }).catch((e: Error) => {
    throw new Error(`${node} did not start: ${e.message}\nSee its log: ${logFile(ctx, node)}\n${tail(logFile(ctx, node))}`);
  });
}

/**
 * Stop a node's server: a fast shutdown, found by more than its pid file. Processes stopped with
 * SIGSTOP are continued first (a stopped process cannot exit); one that will not stop is killed.
 */
export async function stopNode(ctx: LocalContext, node: NodeName): Promise<void> {
  const pid = runningPid(ctx, node);
  if (!pid) return;
  for (const p of nodeProcesses(ctx, node)) signal(p.pid, "SIGCONT");
  signal(pid, "SIGINT");
  try {
    await waitFor(`${node} (pid ${pid}) to shut down`, 60_000, async () => (processAlive(pid, "postgres") ? undefined : true));
  } catch {
    ctx.log(`${node}: did not shut down within 60 s; killing it`);
    for (const p of nodeProcesses(ctx, node)) signal(p.pid, "SIGKILL");
  }
  await waitForRemainsOf(ctx, node);
}

export async function reloadNode(ctx: LocalContext, node: NodeName): Promise<void> {
  const pid = runningPid(ctx, node);
  if (pid) signal(pid, "SIGHUP");
}

function tail(file: string, lines = 15): string {
  if (!fs.existsSync(file)) return "";
  return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

/** Run `fn` with a superuser connection to a node (database `postgres` unless given), over verified TLS. */
export async function withSuperuser<T>(state: StackState, port: number, fn: (c: Client) => Promise<T>, database = "postgres"): Promise<T> {
  return withClient({ host: HOST, port, user: SUPERUSER, password: state.passwords[SUPERUSER], database, ssl: clientSsl(state.stack) }, fn, "nbdb");
}
