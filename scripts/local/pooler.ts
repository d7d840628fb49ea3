// The local stack's PgBouncer: its config (from the shared generator), process and pool counts.
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { MONITOR_ROLE } from "../../infra/topology/monitoring";
import { AUTH_USER } from "../../infra/topology/pgbouncerAuth";
import { stableScramVerifier } from "../../infra/topology/scram";
import { parsePgbouncerVersion } from "../../infra/topology/pgbouncerVersion";
import { POOLER_DEFAULTS, PgbouncerConfig, renderPgbouncerAuthFile, renderPgbouncerIni } from "../../infra/topology/pgbouncerIni";
import { DATABASE } from "../../schema/roles";
import { LocalContext } from "./context";
import { ensureServerDir, primarySocketDir, replicaName, socketFile } from "./postgresNode";
import { HOST, StackState, caFile, clientSsl } from "./state";
import { POOLER_TLS_NAME, certFile, keyFile } from "./tls";
import { chownToServer, processAlive, processesUsing, run, signal, waitFor } from "./system";
import * as net from "net";

export function poolerDir(ctx: LocalContext): string {
  return path.join(ctx.dir, "pgbouncer");
}

const pidFile = (ctx: LocalContext) => path.join(poolerDir(ctx), "pgbouncer.pid");
const iniFile = (ctx: LocalContext) => path.join(poolerDir(ctx), "pgbouncer.ini");
const authFile = (ctx: LocalContext) => path.join(poolerDir(ctx), "userlist.txt");
export const poolerLog = (ctx: LocalContext) => path.join(ctx.dir, "log", "pgbouncer.log");

/** PgBouncer's pid: from its pid file, or (the file gone) the pgbouncer process started with this stack's ini. */
export function poolerPid(ctx: LocalContext): number | undefined {
  if (fs.existsSync(pidFile(ctx))) {
    const pid = Number(fs.readFileSync(pidFile(ctx), "utf8").trim());
    if (processAlive(pid, "pgbouncer")) return pid;
  }
  return processesUsing(poolerDir(ctx)).find((p) => path.basename(p.argv[0] ?? "") === "pgbouncer" && p.argv.includes(iniFile(ctx)))?.pid;
}

/**
 * The port of the read-only entry's host list. PgBouncer 1.24 gives every host of a list one port,
 * and the replicas listen on ports of their own: the entry names one directory per replica, each
 * holding a link `.s.PGSQL.<this port>` to that replica's socket (readonlyLinks()).
 */
export const READONLY_LINK_PORT = 5432;

/** The directory of replica `index`'s link for the read-only entry. */
function readonlyLinkDir(ctx: LocalContext, index: number): string {
  return path.join(primarySocketDir(ctx), "readonly", String(index));
}

/** The replicas the read-only entry spreads reads over: those asked for (removed ones leave it before they stop). */
export function readonlyReplicas(state: StackState): number[] {
  const wanted = Math.min(state.replicas ?? state.ports.replicas.length, state.ports.replicas.length);
  return Array.from({ length: wanted }, (_, i) => i);
}

/** Links for the replicas the entry names; those of other replicas removed. True when any changed. */
function writeReadonlyLinks(ctx: LocalContext, state: StackState): boolean {
  const root = path.dirname(readonlyLinkDir(ctx, 0));
  ensureServerDir(ctx, root);
  const wanted = new Set(readonlyReplicas(state).map(String));
  let changed = false;
  for (const d of fs.readdirSync(root)) {
    if (!wanted.has(d)) {
      fs.rmSync(path.join(root, d), { recursive: true, force: true });
      changed = true;
    }
  }
  for (const i of readonlyReplicas(state)) {
    const dir = readonlyLinkDir(ctx, i);
    ensureServerDir(ctx, dir);
    const link = path.join(dir, `.s.PGSQL.${READONLY_LINK_PORT}`);
    const target = socketFile(ctx, state, replicaName(i));
    if (fs.existsSync(link) || isLink(link)) {
      if (fs.readlinkSync(link) === target) continue;
      fs.rmSync(link, { force: true });
    }
    fs.symlinkSync(target, link);
    changed = true;
  }
  return changed;
}

function isLink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * The stack's PgBouncer config (what writePoolerConfig renders): its listen port, the primary's socket,
 * the pool defaults, client and server TLS. `files` places the auth, log and pid files (the bench's
 * second pooler puts them elsewhere); they default to the stack's pooler's own.
 */
export function poolerConfig(
  ctx: LocalContext,
  state: StackState,
  files: { listenPort?: number; authFile?: string; logFile?: string; pidFile?: string } = {},
): PgbouncerConfig {
  return {
    listenAddr: HOST,
    listenPort: files.listenPort ?? state.ports.pooler,
    // Over the primary's Unix socket: the pooled roles are refused over TCP (pg_hba.conf).
    serverHost: primarySocketDir(ctx),
    serverPort: state.ports.primary,
    // Over the replicas' sockets too: nb_pgbouncer (the auth_query) is refused over TCP as well.
    readonlyServers: { hosts: readonlyReplicas(state).map((i) => readonlyLinkDir(ctx, i)), port: READONLY_LINK_PORT },
    database: DATABASE,
    authFile: files.authFile ?? authFile(ctx),
    ...POOLER_DEFAULTS,
    logFile: files.logFile ?? poolerLog(ctx),
    pidFile: files.pidFile ?? pidFile(ctx),
    clientTls: { certFile: certFile(ctx, POOLER_TLS_NAME), keyFile: keyFile(ctx, POOLER_TLS_NAME) },
    serverTls: { sslmode: "verify-full", caFile: caFile(ctx.stack) },
    // The pooler's own login pauses and resumes it during a switchover (scripts/local/switchover.ts).
    adminUsers: [AUTH_USER],
  };
}

/** Write pgbouncer.ini and the auth file; true when either changed. */
export function writePoolerConfig(ctx: LocalContext, state: StackState): boolean {
  ensureServerDir(ctx, poolerDir(ctx));
  const ini = renderPgbouncerIni(poolerConfig(ctx, state));
  let changed = writeReadonlyLinks(ctx, state);
  for (const [file, content] of [
    [iniFile(ctx), ini],
    // nb_monitor's SCRAM verifier (never its password): a stats user on the admin console, where the
    // PgBouncer exporter logs in (scripts/local/monitoring.ts).
    [authFile(ctx), renderPgbouncerAuthFile(state.passwords[AUTH_USER], { [MONITOR_ROLE]: stableScramVerifier(MONITOR_ROLE, state.passwords[MONITOR_ROLE]) })],
  ] as const) {
    if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === content) continue;
    fs.writeFileSync(file, content, { mode: 0o600 });
    chownToServer(file, ctx.user);
    changed = true;
  }
  return changed;
}

function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST);
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

export async function startPooler(ctx: LocalContext, state: StackState): Promise<void> {
  // A pid file a killed PgBouncer left: it would refuse to start ("pidfile exists") while its pid is
  // still taken (an unreaped zombie, or a pid the system gave to another process).
  if (fs.existsSync(pidFile(ctx)) && !poolerPid(ctx)) fs.rmSync(pidFile(ctx), { force: true });
  // Each client is a file descriptor: raise the soft open-files limit to the hard one first (1,024,
  // a common soft default, would run out near max_client_conn).
  await run("/bin/sh", ["-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', ctx.bins.pgbouncer, "-d", iniFile(ctx)], { as: ctx.user }).catch((e: Error) => {
    throw new Error(`pgbouncer did not start: ${e.message}\nSee its log: ${poolerLog(ctx)}`);
  });
  await waitFor(`pgbouncer on port ${state.ports.pooler} (log: ${poolerLog(ctx)})`, 15_000, async () =>
    poolerPid(ctx) && (await acceptsConnections(state.ports.pooler)) ? true : undefined,
  );
}

/**
 * Stop PgBouncer: a safe shutdown first (SIGINT: it stops listening and exits once every server
 * connection is back, so no transaction is cut), then, when one stays out past `graceMs` (a client
 * idle in a transaction), an immediate one (SIGQUIT). Not SIGTERM: since 1.23 that waits for every
 * client to disconnect, so one idle application connection would keep it running.
 */
export async function stopPooler(ctx: LocalContext, graceMs = 10_000): Promise<void> {
  const pid = poolerPid(ctx);
  if (!pid) return;
  const gone = async () => (processAlive(pid, "pgbouncer") ? undefined : true);
  signal(pid, "SIGINT");
  const safe = await waitFor("pgbouncer's safe shutdown", graceMs, gone).then(
    () => true,
    () => false,
  );
  if (safe) return;
  ctx.log(`pgbouncer still had a transaction open after ${graceMs / 1000} s: shutting it down immediately`);
  signal(pid, "SIGQUIT");
  await waitFor("pgbouncer to exit", 15_000, gone);
}

/** Re-read the config without dropping clients (SIGHUP). */
export function reloadPooler(ctx: LocalContext): void {
  const pid = poolerPid(ctx);
  if (pid) process.kill(pid, "SIGHUP");
}

export interface PoolCounts {
  database: string;
  user: string;
  clientsActive: number;
  clientsWaiting: number;
  serversActive: number;
  serversIdle: number;
  poolMode: string;
}

export async function withAdminConsole<T>(state: StackState, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ host: HOST, port: state.ports.pooler, user: AUTH_USER, password: state.passwords[AUTH_USER], database: "pgbouncer", ssl: clientSsl(state.stack) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The running pooler's version (SHOW VERSION), x.y.z. */
export async function poolerVersion(state: StackState): Promise<string | undefined> {
  return withAdminConsole(state, async (c) => parsePgbouncerVersion(String(Object.values((await c.query("SHOW VERSION")).rows[0] ?? {})[0] ?? "")));
}

export interface PoolerStats {
  readonly transactions: number;
  /** Protocol-level named prepared statements clients sent (Parse with a name), and PgBouncer sent on to servers. */
  readonly clientParses: number;
  readonly serverParses: number;
  readonly binds: number;
}

/** SHOW STATS of one database, totals since the pooler started. */
export async function poolerStats(state: StackState, database: string): Promise<PoolerStats> {
  return withAdminConsole(state, async (c) => {
    const r = (await c.query("SHOW STATS")).rows.find((x) => x.database === database);
    if (!r) return { transactions: 0, clientParses: 0, serverParses: 0, binds: 0 };
    return { transactions: Number(r.total_xact_count), clientParses: Number(r.total_client_parse_count), serverParses: Number(r.total_server_parse_count), binds: Number(r.total_bind_count) };
  });
}

/** SHOW POOLS on the admin console, as the stats user. */
export async function poolCounts(state: StackState): Promise<PoolCounts[]> {
  return withAdminConsole(state, async (client) => {
    const res = await client.query("SHOW POOLS");
    return res.rows
      .filter((r) => r.database !== "pgbouncer")
      .map((r) => ({
        database: r.database,
        user: r.user,
        clientsActive: Number(r.cl_active),
        clientsWaiting: Number(r.cl_waiting),
        serversActive: Number(r.sv_active),
        serversIdle: Number(r.sv_idle),
        poolMode: r.pool_mode,
      }));
  });
}
