// The local stack's metrics exporters (issue 18 item 4), each its own process on a port of the
// stack's, on 127.0.0.1; `nbdb status` names their URLs (docs/monitoring.md):
// - Debian's prometheus-postgres-exporter on the primary as nb_monitor, with the project's queries
//   (infra/topology/monitoring.ts);
// - prometheus-pgbouncer-exporter (the pins of infra/topology/monitoring.ts, in the virtual environment
//   of scripts/local/setup.ts) on the pooler's admin console as nb_monitor, a stats user (SHOW only),
//   over the pooler's TLS verified against the CA; its config from the shared renderer.
import { spawn } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { connectionUrl } from "../../client/outputs";
import { MONITOR_ROLE, PGBOUNCER_EXPORTER_PASSWORD_VARIABLE, pgbouncerExporterYaml, postgresExporterQueries } from "../../infra/topology/monitoring";
import { DATABASE } from "../../schema/roles";
import { LocalContext } from "./context";
import { ensureServerDir } from "./postgresNode";
import { HOST, StackState, caFile, newKeptPort, saveState } from "./state";
import { installedPgbouncerExporter } from "./setup";
import { processAlive, waitFor } from "./system";

export const POSTGRES_EXPORTER_BIN = "/usr/bin/prometheus-postgres-exporter";

export type ExporterName = "postgres-exporter" | "pgbouncer-exporter";
const EXPORTERS: readonly ExporterName[] = ["postgres-exporter", "pgbouncer-exporter"];
/** Each exporter's key in state.ports.exporters. */
const PORT_KEY = { "postgres-exporter": "postgres", "pgbouncer-exporter": "pgbouncer" } as const satisfies Record<ExporterName, keyof ExporterPorts>;
export type ExporterPorts = NonNullable<StackState["ports"]["exporters"]>;

/** The exporter's command where it is installed. */
function binOf(name: ExporterName): string | undefined {
  if (name === "postgres-exporter") return fs.existsSync(POSTGRES_EXPORTER_BIN) ? POSTGRES_EXPORTER_BIN : undefined;
  return installedPgbouncerExporter();
}

/** The exporters installed on this machine (`nbdb setup --for-tests` installs both); `up` runs these. */
export function installedExporters(): ExporterName[] {
  return EXPORTERS.filter((n) => binOf(n));
}

/** The port kept for an exporter, once the stack has one. */
export function exporterPort(state: StackState, name: ExporterName): number | undefined {
  return state.ports.exporters?.[PORT_KEY[name]];
}

interface ExporterRun {
  readonly bin: string;
  readonly args: string[];
  /** The whole environment (secrets go here, never on the command line). */
  readonly env: Record<string, string>;
  /** Files whose content the process read at start: a change restarts it. */
  readonly config: string;
}

export function monitoringDir(ctx: LocalContext): string {
  return path.join(ctx.dir, "monitoring");
}

const pidFile = (ctx: LocalContext, name: ExporterName) => path.join(monitoringDir(ctx), `${name}.pid`);
const configStamp = (ctx: LocalContext, name: ExporterName) => path.join(monitoringDir(ctx), `${name}.started-with`);
const queriesFile = (ctx: LocalContext) => path.join(monitoringDir(ctx), "queries.yaml");
const pgbouncerExporterConfig = (ctx: LocalContext) => path.join(monitoringDir(ctx), "pgbouncer-exporter.yaml");
export const exporterLog = (ctx: LocalContext, name: ExporterName) => path.join(ctx.dir, "log", `${name}.log`);

/** The exporters' metrics URLs, once the stack has ports for them. */
export function exporterUrls(state: StackState): Partial<Record<ExporterName, string>> {
  return Object.fromEntries(EXPORTERS.filter((n) => exporterPort(state, n)).map((n) => [n, `http://${HOST}:${exporterPort(state, n)}/metrics`]));
}

/** The PgBouncer exporter's config (the shared renderer): on 127.0.0.1, the stack's pooler, verified against its CA. */
function localPgbouncerExporterYaml(state: StackState, port: number): string {
  return pgbouncerExporterYaml({ listenHost: HOST, listenPort: port, pooler: { host: HOST, port: state.ports.pooler }, caFile: caFile(state.stack) });
}

function runOf(ctx: LocalContext, state: StackState, name: ExporterName): ExporterRun {
  const base = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: ctx.user.home, LANG: "C.UTF-8" };
  const port = exporterPort(state, name)!;
  if (name === "pgbouncer-exporter") {
    const yaml = localPgbouncerExporterYaml(state, port);
    const password = encodeURIComponent(state.passwords[MONITOR_ROLE]);
    return {
      bin: binOf(name)!,
      args: [`--config=${pgbouncerExporterConfig(ctx)}`, "--log-level=WARNING"],
      env: { ...base, [PGBOUNCER_EXPORTER_PASSWORD_VARIABLE]: password },
      // The password's digest, not the password: a rotated one restarts the exporter.
      config: `${createHash("sha256").update(password).digest("hex")}\n${yaml}`,
    };
  }
  const dsn = connectionUrl(MONITOR_ROLE, state.passwords[MONITOR_ROLE], { host: HOST, port: state.ports.primary }, DATABASE, caFile(state.stack));
  return {
    bin: POSTGRES_EXPORTER_BIN,
    args: [`--web.listen-address=${HOST}:${port}`, `--extend.query-path=${queriesFile(ctx)}`],
    env: { ...base, DATA_SOURCE_NAME: dsn },
    config: `${dsn}\n${postgresExporterQueries()}`,
  };
}

export function exporterPid(ctx: LocalContext, name: ExporterName): number | undefined {
  if (!fs.existsSync(pidFile(ctx, name))) return undefined;
  const pid = Number(fs.readFileSync(pidFile(ctx, name), "utf8").trim());
  return processAlive(pid, name) ? pid : undefined;
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url);
    return res.ok;
  } catch {
    return false;
  }
}

async function stopExporter(ctx: LocalContext, name: ExporterName): Promise<void> {
  const pid = exporterPid(ctx, name);
  if (pid) {
    process.kill(pid, "SIGTERM");
    await waitFor(`${name} to exit`, 15_000, async () => (exporterPid(ctx, name) ? undefined : true));
  }
  fs.rmSync(pidFile(ctx, name), { force: true });
}

async function startExporter(ctx: LocalContext, state: StackState, name: ExporterName, run: ExporterRun): Promise<void> {
  const log = fs.openSync(exporterLog(ctx, name), "a", 0o600);
  const asOther = ctx.user.uid !== process.getuid?.();
  if (asOther) fs.fchownSync(log, ctx.user.uid, ctx.user.gid);
  const child = spawn(run.bin, run.args, {
    env: run.env,
    detached: true,
    stdio: ["ignore", log, log],
    cwd: "/",
    ...(asOther ? { uid: ctx.user.uid, gid: ctx.user.gid } : {}),
  });
  fs.closeSync(log);
  child.unref();
  if (!child.pid) throw new Error(`${name} did not start; see ${exporterLog(ctx, name)}`);
  fs.writeFileSync(pidFile(ctx, name), `${child.pid}\n`, { mode: 0o600 });
  fs.writeFileSync(configStamp(ctx, name), run.config, { mode: 0o600 });
  const url = exporterUrls(state)[name]!;
  await waitFor(`${name} at ${url} (log: ${exporterLog(ctx, name)})`, 30_000, async () => (exporterPid(ctx, name) && (await answers(url)) ? true : undefined));
}

/** A port for an exporter: kept for the stack's life, outside the ephemeral range, no other stack's. */
function newExporterPort(): Promise<number> {
  return newKeptPort();
}

function writeIfChanged(file: string, content: string): void {
  if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== content) fs.writeFileSync(file, content, { mode: 0o644 });
}

/**
 * Run the installed exporters: each one's port chosen once (kept in state.json), its files written,
 * started when it is not running and restarted when what it read at start changed. Returns what changed.
 */
export async function ensureExporters(ctx: LocalContext, state: StackState): Promise<string[]> {
  const installed = installedExporters();
  const changes: string[] = [];
  for (const name of installed.filter((n) => !exporterPort(state, n))) {
    const port = await newExporterPort();
    state.ports.exporters = { ...state.ports.exporters, [PORT_KEY[name]]: port };
    saveState(state);
  }
  if (installed.length === 0) return changes;
  ensureServerDir(ctx, monitoringDir(ctx));
  // Neither file holds a secret (the passwords are in the processes' environments).
  writeIfChanged(queriesFile(ctx), postgresExporterQueries());
  if (installed.includes("pgbouncer-exporter")) writeIfChanged(pgbouncerExporterConfig(ctx), localPgbouncerExporterYaml(state, exporterPort(state, "pgbouncer-exporter")!));
  for (const name of installed) {
    const run = runOf(ctx, state, name);
    const running = exporterPid(ctx, name);
    const stamp = fs.existsSync(configStamp(ctx, name)) ? fs.readFileSync(configStamp(ctx, name), "utf8") : "";
    if (running && stamp === run.config) continue;
    if (running) await stopExporter(ctx, name);
    ctx.log(`starting ${name} on ${exporterUrls(state)[name]}`);
    await startExporter(ctx, state, name, run);
    changes.push(`${running ? "restarted" : "started"} ${name}`);
  }
  return changes;
}

/** Stop the exporters (down). */
export async function stopExporters(ctx: LocalContext): Promise<void> {
  for (const name of EXPORTERS) await stopExporter(ctx, name);
}

export interface ExporterStatus {
  readonly name: ExporterName;
  readonly url: string;
  readonly pid: number | null;
  readonly running: boolean;
}

/** The installed exporters that have a port. */
export function exportersStatus(ctx: LocalContext, state: StackState): ExporterStatus[] {
  const urls = exporterUrls(state);
  return installedExporters().filter((n) => urls[n]).map((name) => {
    const pid = exporterPid(ctx, name);
    return { name, url: urls[name]!, pid: pid ?? null, running: !!pid };
  });
}
