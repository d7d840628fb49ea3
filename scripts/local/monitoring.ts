// The local stack's metrics exporter (issue 18 item 4): Debian's prometheus-postgres-exporter on the
// primary as nb_monitor, with the project's queries (infra/topology/monitoring.ts), as its own
// process on a port of the stack's, on 127.0.0.1; `nbdb status` names its URL. Debian 12's
// prometheus-pgbouncer-exporter (1.7) is not run: it reads SHOW STATS columns PgBouncer 1.8 removed
// (KeyError: 'total_requests' at start against 1.24.1), docs/monitoring.md.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { connectionUrl } from "../../client/outputs";
import { MONITOR_ROLE, postgresExporterQueries } from "../../infra/topology/monitoring";
import { DATABASE } from "../../schema/roles";
import { LocalContext } from "./context";
import { ensureServerDir } from "./postgresNode";
import { HOST, StackState, caFile, newKeptPort, saveState } from "./state";
import { processAlive, waitFor } from "./system";

export const POSTGRES_EXPORTER_BIN = "/usr/bin/prometheus-postgres-exporter";

export type ExporterName = "postgres-exporter";
const EXPORTERS: readonly ExporterName[] = ["postgres-exporter"];

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
export const exporterLog = (ctx: LocalContext, name: ExporterName) => path.join(ctx.dir, "log", `${name}.log`);

/** True when Debian's exporter is installed (`nbdb setup --for-tests` installs it). */
export function hasExporters(): boolean {
  return fs.existsSync(POSTGRES_EXPORTER_BIN);
}

/** The exporters' metrics URLs, once the stack has ports for them. */
export function exporterUrls(state: StackState): Partial<Record<ExporterName, string>> {
  const p = state.ports.exporters;
  return p ? { "postgres-exporter": `http://${HOST}:${p.postgres}/metrics` } : {};
}

function runOf(ctx: LocalContext, state: StackState): ExporterRun {
  const dsn = connectionUrl(MONITOR_ROLE, state.passwords[MONITOR_ROLE], { host: HOST, port: state.ports.primary }, DATABASE, caFile(state.stack));
  return {
    bin: POSTGRES_EXPORTER_BIN,
    args: [`--web.listen-address=${HOST}:${state.ports.exporters!.postgres}`, `--extend.query-path=${queriesFile(ctx)}`],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: ctx.user.home, LANG: "C.UTF-8", DATA_SOURCE_NAME: dsn },
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

async function exporterPorts(): Promise<{ postgres: number }> {
  return { postgres: await newKeptPort() };
}

/**
 * Run the exporter when Debian's package is installed: its port chosen once, the query file written,
 * started when it is not running and restarted when what it read at start changed. Returns what changed.
 */
export async function ensureExporters(ctx: LocalContext, state: StackState): Promise<string[]> {
  if (!hasExporters()) return [];
  const changes: string[] = [];
  if (!state.ports.exporters) {
    state.ports.exporters = await exporterPorts();
    saveState(state);
  }
  ensureServerDir(ctx, monitoringDir(ctx));
  const queries = postgresExporterQueries();
  if (!fs.existsSync(queriesFile(ctx)) || fs.readFileSync(queriesFile(ctx), "utf8") !== queries) {
    fs.writeFileSync(queriesFile(ctx), queries, { mode: 0o644 });
  }
  for (const name of EXPORTERS) {
    const run = runOf(ctx, state);
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

export function exportersStatus(ctx: LocalContext, state: StackState): ExporterStatus[] {
  const urls = exporterUrls(state);
  return EXPORTERS.filter((n) => urls[n]).map((name) => {
    const pid = exporterPid(ctx, name);
    return { name, url: urls[name]!, pid: pid ?? null, running: !!pid };
  });
}
