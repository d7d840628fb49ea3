// What the local stack needs from this machine: the PostgreSQL and PgBouncer binaries, an
// unprivileged user to run them as, child processes, free ports and live pids.
import { execFile } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { PGBOUNCER_MIN_VERSION, PGBOUNCER_VERSION, compareVersions } from "../../infra/topology/pgbouncerVersion";
import { UserError } from "../errors";
import { SETUP_COMMAND, builtPgbouncer, hasSupportedPgbouncer, pgbouncerVersionOf } from "./setup";

export interface Binaries {
  readonly pgBinDir: string;
  readonly pgbouncer: string;
  /** What the pgbouncer binary reports, x.y.z. */
  readonly pgbouncerVersion: string;
}

const PG_PACKAGE = "postgresql-15";
const MIN_PG_MAJOR = 15;

function pgBinDirCandidates(): string[] {
  if (process.env.NBDB_PG_BINDIR) return [process.env.NBDB_PG_BINDIR];
  const root = "/usr/lib/postgresql";
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && Number(v) >= MIN_PG_MAJOR)
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, "bin"));
}

function onPath(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/bin"]) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  return undefined;
}

/** The PgBouncer to run: NBDB_PGBOUNCER, else the supported build (nbdb setup), else one on PATH. */
function pgbouncerCandidate(): string | undefined {
  if (process.env.NBDB_PGBOUNCER) return process.env.NBDB_PGBOUNCER;
  if (hasSupportedPgbouncer()) return builtPgbouncer();
  return onPath("pgbouncer");
}

export function findBinaries(): Binaries {
  const needed = ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql", "pg_isready"];
  const pgBinDir = pgBinDirCandidates().find((d) => needed.every((b) => fs.existsSync(path.join(d, b))));
  const pgbouncer = pgbouncerCandidate();
  const missing: string[] = [];
  if (!pgBinDir) missing.push(`PostgreSQL ${MIN_PG_MAJOR}+ server binaries (${needed.join(", ")}) in /usr/lib/postgresql/<version>/bin`);
  if (!pgbouncer || !fs.existsSync(pgbouncer)) missing.push(`PgBouncer ${PGBOUNCER_VERSION}`);
  if (missing.length > 0) {
    throw new UserError(
      `missing ${missing.join(" and ")}.\n` +
        `Install them with: ${SETUP_COMMAND}\n` +
        `(or point NBDB_PG_BINDIR / NBDB_PGBOUNCER at existing binaries).`,
    );
  }
  const pgbouncerVersion = pgbouncerVersionOf(pgbouncer!);
  if (!pgbouncerVersion || compareVersions(pgbouncerVersion, PGBOUNCER_MIN_VERSION) < 0) {
    const from = process.env.NBDB_PGBOUNCER ? ` (NBDB_PGBOUNCER=${process.env.NBDB_PGBOUNCER})` : "";
    throw new UserError(
      `${pgbouncer}${from} is PgBouncer ${pgbouncerVersion ?? "of unknown version"}, older than the supported ${PGBOUNCER_VERSION}: ` +
        `it pools prepared statements and startup parameters differently from the Docker and AWS stacks (docs/pooler.md).\n` +
        `Install the supported one with: ${SETUP_COMMAND}` +
        (process.env.NBDB_PGBOUNCER ? `\n(and unset NBDB_PGBOUNCER, or point it at PgBouncer ${PGBOUNCER_MIN_VERSION} or newer)` : ""),
    );
  }
  return { pgBinDir: pgBinDir!, pgbouncer: pgbouncer!, pgbouncerVersion };
}

export interface ServerUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

/**
 * PostgreSQL and PgBouncer refuse to run as root. Run as root, the servers run as the `postgres`
 * system user that Debian's packages create; otherwise as whoever runs nbdb.
 */
export function serverUser(): ServerUser {
  const uid = process.getuid?.() ?? 0;
  const wanted = uid === 0 ? "postgres" : undefined;
  const entries = fs.readFileSync("/etc/passwd", "utf8").split("\n").map((l) => l.split(":"));
  const entry = wanted ? entries.find((e) => e[0] === wanted) : entries.find((e) => Number(e[2]) === uid);
  if (!entry) {
    if (wanted) {
      throw new UserError(
        `running as root, the servers must run as the unprivileged user '${wanted}', which does not exist.\n` +
          `Install ${PG_PACKAGE} (it creates the user), or run nbdb as an ordinary user.`,
      );
    }
    return { name: String(uid), uid, gid: process.getgid?.() ?? uid, home: "/tmp" };
  }
  return { name: entry[0], uid: Number(entry[2]), gid: Number(entry[3]), home: entry[5] || "/tmp" };
}

export interface RunOptions {
  /** Run as the server user (when nbdb runs as root). */
  readonly as?: ServerUser;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
  /** Written to the child's standard input (then closed): secrets go here, never into a file or argv. */
  readonly input?: string;
  /** How to name the command in an error (default: the command line; a script's text is long). */
  readonly describe?: string;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const asOther = opts.as && opts.as.uid !== process.getuid?.();
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        env: { ...process.env, ...(asOther ? { HOME: opts.as!.home, USER: opts.as!.name } : {}), ...opts.env },
        uid: asOther ? opts.as!.uid : undefined,
        gid: asOther ? opts.as!.gid : undefined,
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 16 * 1024 * 1024,
        cwd: "/",
      },
      (err, stdout, stderr) => {
        if (err) {
          const detail = (stderr || stdout || err.message).trim();
          reject(new Error(`${opts.describe ?? `${path.basename(cmd)} ${args.join(" ")}`} failed: ${detail}`));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(opts.input ?? "");
  });
}

export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly argv: string[];
  /** Its working directory, when this user may read it. */
  readonly cwd: string | undefined;
}

/** Every process of the machine but this one (those that vanish while we look are skipped). */
export function processes(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").filter((a) => a !== "");
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      let cwd: string | undefined;
      try {
        cwd = fs.readlinkSync(`/proc/${d}/cwd`);
      } catch {
        cwd = undefined;
      }
      out.push({ pid: Number(d), ppid, argv, cwd });
    } catch {
      continue;
    }
  }
  return out;
}

function under(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/**
 * Processes that work in `dir` or below: their working directory is there (every PostgreSQL server
 * process works in its data directory), or an argument names a path there (initdb --pgdata=...,
 * pg_basebackup --pgdata=..., pgbouncer <dir>/pgbouncer.ini). Found without any pid file.
 */
export function processesUsing(dir: string): ProcessInfo[] {
  const abs = path.resolve(dir);
  return processes().filter(
    (p) => (p.cwd !== undefined && under(p.cwd, abs)) || p.argv.some((a) => under(a.slice(a.indexOf("=") + 1), abs) || under(a, abs)),
  );
}

/** Send a signal, ignoring a process that is already gone. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** Give a path to the server user (no-op when nbdb is not root). */
export function chownToServer(p: string, user: ServerUser): void {
  if (process.getuid?.() === 0) fs.chownSync(p, user.uid, user.gid);
}

/** Lowest port a stack keeps: above the registered ports most services take (PostgreSQL's 5432 among them). */
const KEPT_PORT_MIN = 10_000;

/** The kernel's ephemeral range (what it gives outgoing connections' local ports), inclusive. */
export function ephemeralPortRange(file = "/proc/sys/net/ipv4/ip_local_port_range"): [number, number] {
  const [lo, hi] = (fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "").trim().split(/\s+/).map(Number);
  // Linux's default when the file is unreadable (not Linux, or a restricted /proc).
  return Number.isInteger(lo) && Number.isInteger(hi) && lo <= hi ? [lo, hi] : [32_768, 60_999];
}

/**
 * A free TCP port on 127.0.0.1 for a server that keeps it across restarts: outside the kernel's
 * ephemeral range, so that while the server is down no outgoing connection (a replica's, a
 * client's, the Pulumi engine's own) can be given it as its local port and hold it against the
 * restart. `avoid`: ports other stacks keep while their servers are stopped. Chosen at random
 * among the free ones; the kernel's own choice only when the ephemeral range leaves none.
 */
export async function freePort(avoid: Iterable<number> = [], range: [number, number] = ephemeralPortRange()): Promise<number> {
  const skip = new Set(avoid);
  const [lo, hi] = range;
  const below = Math.max(0, lo - KEPT_PORT_MIN);
  const above = Math.max(0, 65_535 - Math.max(hi, KEPT_PORT_MIN - 1));
  for (let tries = 0; below + above > 0 && tries < 200; tries++) {
    const i = Math.floor(Math.random() * (below + above));
    const port = i < below ? KEPT_PORT_MIN + i : Math.max(hi, KEPT_PORT_MIN - 1) + 1 + (i - below);
    if (!skip.has(port) && (await portIsFree(port))) return port;
  }
  for (;;) {
    const port = await kernelChosenPort();
    if (!skip.has(port)) return port;
  }
}

function kernelChosenPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** True when nothing listens on 127.0.0.1:port (and we may bind it). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** True when a process with this pid exists and its command line contains `name`. */
export function processAlive(pid: number | undefined, name: string): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(name);
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `check` until it returns a value, or fail with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : "";
      throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${why}`);
    }
    await sleep(200);
  }
}
