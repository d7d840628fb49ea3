// One PostgreSQL server of a local stack: its data directory, settings, process and lifecycle.
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { renderConf, renderHba, serverSettings } from "../../infra/topology/postgresSettings";
import { REPLICATION_USER, replicaBootstrapScript } from "../../infra/topology/replicaBootstrap";
import { LocalContext, bin, nodeSizing, replicaLimit } from "./context";
import { DATABASE } from "../../schema/roles";
import { archiveOption } from "./pgbackrest";
import { HOST, SUPERUSER, StackState } from "./state";
import { chownToServer, processAlive, run, waitFor } from "./system";

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

export function hasCluster(ctx: LocalContext, node: NodeName): boolean {
  return fs.existsSync(path.join(dataDir(ctx, node), "PG_VERSION"));
}

/** The postmaster's pid when it is running, else undefined. */
export function runningPid(ctx: LocalContext, node: NodeName): number | undefined {
  const pidFile = path.join(dataDir(ctx, node), "postmaster.pid");
  if (!fs.existsSync(pidFile)) return undefined;
  const pid = Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]);
  return processAlive(pid, "postgres") ? pid : undefined;
}

/** Make a directory the server user owns with mode 0700 (PostgreSQL insists on it for data). */
export function ensureServerDir(ctx: LocalContext, dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  chownToServer(dir, ctx.user);
}

function writeServerFile(ctx: LocalContext, file: string, content: string): boolean {
  if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === content) return false;
  fs.writeFileSync(file, content, { mode: 0o600 });
  chownToServer(file, ctx.user);
  return true;
}

/**
 * Write the node's settings (nbdb.conf, included from postgresql.conf). Returns true when they
 * changed, so a running server needs a reload.
 */
export function writeNodeConf(ctx: LocalContext, node: NodeName, port: number): boolean {
  const dir = dataDir(ctx, node);
  const main = path.join(dir, "postgresql.conf");
  const include = "include = 'nbdb.conf'";
  const mainText = fs.readFileSync(main, "utf8");
  if (!mainText.includes(include)) writeServerFile(ctx, main, `${mainText}\n# neuralblitz-db settings\n${include}\n`);
  const settings = {
    ...serverSettings(nodeSizing(), replicaLimit(), { ...(hasPgCron(ctx) ? { pgCron: { database: DATABASE } } : {}), archive: archiveOption(ctx, dir) }),
    listen_addresses: HOST,
    port,
    unix_socket_directories: "",
    cluster_name: `nbdb-${ctx.stack}-${node}`,
  };
  const confChanged = writeServerFile(ctx, path.join(dir, "nbdb.conf"), renderConf(settings));
  const hbaChanged = writeServerFile(ctx, path.join(dir, "pg_hba.conf"), renderHba([`${HOST}/32`], REPLICATION_USER));
  return confChanged || hbaChanged;
}

/** Debian's postgresql-15-cron installed next to the server: then maintenance is scheduled in the database. */
export function hasPgCron(ctx: LocalContext): boolean {
  return fs.existsSync(path.join(path.dirname(ctx.bins.pgBinDir), "lib", "pg_cron.so"));
}

export async function initPrimary(ctx: LocalContext, state: StackState): Promise<void> {
  const dir = dataDir(ctx, "primary");
  // A directory without PG_VERSION is an initdb that never finished: nothing in it is data.
  fs.rmSync(dir, { recursive: true, force: true });
  ensureServerDir(ctx, dir);
  const pwFile = path.join(ctx.dir, "log", ".initdb-pw");
  writeServerFile(ctx, pwFile, state.passwords[SUPERUSER] + "\n");
  try {
    await run(
      bin(ctx, "initdb"),
      [`--pgdata=${dir}`, `--username=${SUPERUSER}`, `--pwfile=${pwFile}`, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums"],
      { as: ctx.user },
    );
  } finally {
    fs.rmSync(pwFile, { force: true });
  }
  writeNodeConf(ctx, "primary", state.ports.primary);
}

/** Take a base backup of the primary into the replica's (new or partial) data directory. */
export async function bootstrapReplica(ctx: LocalContext, state: StackState, index: number): Promise<void> {
  const node = replicaName(index);
  const dir = dataDir(ctx, node);
  fs.rmSync(dir, { recursive: true, force: true });
  ensureServerDir(ctx, dir);
  const script = replicaBootstrapScript({ primaryHost: HOST, primaryPort: state.ports.primary, replicationUser: REPLICATION_USER, index });
  await run("/bin/sh", ["-c", script], {
    as: ctx.user,
    env: { PGDATA: dir, PGPASSWORD: state.passwords.nb_replicator, PATH: `${ctx.bins.pgBinDir}:${process.env.PATH}` },
    timeoutMs: 30 * 60_000,
  });
  writeNodeConf(ctx, node, portOf(state, node));
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
  return fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      return fs.readFileSync(`/proc/${d}/cmdline`, "utf8").startsWith(title);
    } catch {
      return false;
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

export async function startNode(ctx: LocalContext, node: NodeName): Promise<void> {
  await waitForRemainsOf(ctx, node);
  await run(bin(ctx, "pg_ctl"), ["start", `--pgdata=${dataDir(ctx, node)}`, `--log=${logFile(ctx, node)}`, "--wait", "--timeout=120"], {
    as: ctx.user,
    timeoutMs: 130_000,
  }).catch((e: Error) => {
    throw new Error(`${node} did not start: ${e.message}\nSee its log: ${logFile(ctx, node)}\n${tail(logFile(ctx, node))}`);
  });
}

export async function stopNode(ctx: LocalContext, node: NodeName): Promise<void> {
  if (!runningPid(ctx, node)) return;
  await run(bin(ctx, "pg_ctl"), ["stop", `--pgdata=${dataDir(ctx, node)}`, "--mode=fast", "--wait", "--timeout=120"], { as: ctx.user, timeoutMs: 130_000 });
}

export async function reloadNode(ctx: LocalContext, node: NodeName): Promise<void> {
  await run(bin(ctx, "pg_ctl"), ["reload", `--pgdata=${dataDir(ctx, node)}`], { as: ctx.user });
}

function tail(file: string, lines = 15): string {
  if (!fs.existsSync(file)) return "";
  return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

/** Run `fn` with a superuser connection to a node (database `postgres` unless given). */
export async function withSuperuser<T>(state: StackState, port: number, fn: (c: Client) => Promise<T>, database = "postgres"): Promise<T> {
  const client = new Client({ host: HOST, port, user: SUPERUSER, password: state.passwords[SUPERUSER], database, application_name: "nbdb" });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
