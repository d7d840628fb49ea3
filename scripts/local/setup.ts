// What a fresh Debian machine needs for the local stack, installed by `nbdb setup` (and by
// `nbdb up`/`start` when something is missing): PostgreSQL 15 and pg_cron from Debian's packages,
// and the supported PgBouncer built from Debian 13's source package into a fixed prefix outside the
// repository. Idempotent: what is already there is left alone. Without root (or without apt) it
// changes nothing and names the one command that does it.
import { execFile, execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as lockfile from "proper-lockfile";
import { PGBOUNCER_EXPORTER_IMPORT_CHECK, PGBOUNCER_EXPORTER_REQUIREMENTS, PGBOUNCER_EXPORTER_VERSION } from "../../infra/topology/monitoring";
import { PGBOUNCER_DEBIAN_SOURCE, PGBOUNCER_VERSION, parsePgbouncerVersion } from "../../infra/topology/pgbouncerVersion";
import { UserError } from "../errors";

export const SETUP_COMMAND = "sudo npx nbdb setup";

/** Debian packages of the servers: the server itself is required, pg_cron schedules maintenance. */
export const SERVER_PACKAGES = ["postgresql-15", "postgresql-15-cron"] as const;

/**
 * What the test suite needs beside the local stack (`npm test` installs them, as root with apt): the
 * drivers of the compatibility suite (test/drivers.test.ts), pgBackRest (test/backup.test.ts) and
 * PostgreSQL's metrics exporter (test/monitoring.test.ts; `nbdb up` runs it wherever it is installed).
 */
export const TEST_PACKAGES = [
  "default-jdk-headless",
  "libpostgresql-jdbc-java",
  "python3-psycopg",
  "python3-asyncpg",
  "python3-psycopg2",
  "python3-sqlalchemy",
  "python3-greenlet",
  "pgbackrest",
  "prometheus-postgres-exporter",
  // PgBouncer's exporter (below): its virtual environment, and the PostgreSQL driver it runs on.
  "python3-venv",
] as const;

/** What building PgBouncer needs from Debian 12 (its own libraries; nothing from Debian 13 but the source). */
export const PGBOUNCER_BUILD_PACKAGES = ["build-essential", "pkg-config", "libevent-dev", "libssl-dev", "libc-ares-dev", "dpkg-dev", "ca-certificates"] as const;

/** Only source packages come from Debian 13: no binary of it can be installed through this entry. */
export const TRIXIE_SOURCES_FILE = "/etc/apt/sources.list.d/neuralblitz-db-trixie-src.sources";
/**
 * The Debian archive and security archive this machine's apt already uses (deb822 `.sources` files
 * or `sources.list` lines): the Debian 13 source entry goes to the same mirrors, so nbdb names no
 * archive of its own and follows the machine's configuration (a local mirror, a proxy).
 */
export function debianMirrors(texts: readonly string[]): { archive: string; security: string } | undefined {
  const entries: { uris: string[]; suites: string[] }[] = [];
  for (const text of texts) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string) => (new RegExp(`^${name}:\\s*(.+)$`, "mi").exec(stanza)?.[1] ?? "").trim().split(/\s+/).filter(Boolean);
      if (field("Types").length) entries.push({ uris: field("URIs"), suites: field("Suites") });
    }
    for (const line of text.split("\n")) {
      const m = /^\s*deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m) entries.push({ uris: [m[1]], suites: [m[2]] });
    }
  }
  const debian = entries.filter((e) => e.suites.some((x) => /^(bookworm|trixie|bullseye|stable)(-updates|-security)?$/.test(x)));
  const archive = debian.find((e) => e.suites.some((x) => !x.endsWith("-security")))?.uris[0];
  const security = debian.find((e) => e.suites.some((x) => x.endsWith("-security")))?.uris[0];
  return archive && security ? { archive, security } : undefined;
}

function trixieSources(m: { archive: string; security: string }): string {
  return `# Written by neuralblitz-db (scripts/local/setup.ts): source packages only (deb-src), for
# building Debian 13's PgBouncer ${PGBOUNCER_VERSION} on Debian 12. No Debian 13 binary is installed from here.
Types: deb-src
URIs: ${m.archive}
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: ${m.security}
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;
}

/** The apt configuration files of this machine, as text. */
function aptSourceTexts(): string[] {
  const dir = "/etc/apt/sources.list.d";
  const files = ["/etc/apt/sources.list", ...(fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.(sources|list)$/.test(f)).map((f) => path.join(dir, f)) : [])];
  return files.filter((f) => f !== TRIXIE_SOURCES_FILE && fs.existsSync(f)).map((f) => fs.readFileSync(f, "utf8"));
}

const isRoot = () => process.getuid?.() === 0;

const MACHINE_PREFIX_BASE = "/usr/local/lib/neuralblitz-db";

/**
 * Where `nbdb setup` installs the supported PgBouncer: a fixed machine-wide prefix as root, a cache
 * directory of the user otherwise (NBDB_PGBOUNCER_PREFIX overrides). Outside the repository, so
 * every checkout and every stack shares one build.
 */
export function pgbouncerPrefix(): string {
  if (process.env.NBDB_PGBOUNCER_PREFIX) return path.resolve(process.env.NBDB_PGBOUNCER_PREFIX);
  return path.join(installBase(), `pgbouncer-${PGBOUNCER_VERSION}`);
}

/** Where nbdb setup installs what Debian does not package: machine-wide as root, the user's cache otherwise. */
function installBase(): string {
  return isRoot() ? MACHINE_PREFIX_BASE : path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "neuralblitz-db");
}

/** Where a finished build is looked for: the install prefix, then (for other users) root's machine-wide one. */
function prefixesToSearch(): string[] {
  const machine = path.join(MACHINE_PREFIX_BASE, `pgbouncer-${PGBOUNCER_VERSION}`);
  return [...new Set([pgbouncerPrefix(), ...(process.env.NBDB_PGBOUNCER_PREFIX ? [] : [machine])])];
}

const binaryIn = (prefix: string) => path.join(prefix, "bin", "pgbouncer");
/** Written last by a build: its absence means the build never finished (it is then redone). */
const markerIn = (prefix: string) => path.join(prefix, "NBDB-BUILD");
const markerFile = () => markerIn(pgbouncerPrefix());

function finishedBuild(prefix: string): boolean {
  const marker = markerIn(prefix);
  return fs.existsSync(marker) && fs.readFileSync(marker, "utf8").trim() !== "" && pgbouncerVersionOf(binaryIn(prefix)) === PGBOUNCER_VERSION;
}

/** The supported PgBouncer's binary: the finished build found, else where setup installs it. */
export function builtPgbouncer(): string {
  return binaryIn(prefixesToSearch().find(finishedBuild) ?? pgbouncerPrefix());
}

/** True when the supported PgBouncer is built and installed (by this user, or machine-wide by root). */
export function hasSupportedPgbouncer(): boolean {
  return prefixesToSearch().some(finishedBuild);
}

const versionCache = new Map<string, string | undefined>();

/** The version a pgbouncer binary reports (x.y.z), or undefined when it does not run. */
export function pgbouncerVersionOf(binary: string): string | undefined {
  if (!versionCache.has(binary)) {
    let v: string | undefined;
    try {
      v = parsePgbouncerVersion(execFileSync(binary, ["--version"], { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] }));
    } catch {
      v = undefined;
    }
    versionCache.set(binary, v);
  }
  return versionCache.get(binary);
}

export function isInstalled(pkg: string): boolean {
  try {
    return execFileSync("dpkg-query", ["-W", "-f=${Status}", pkg], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).includes("install ok installed");
  } catch {
    return false;
  }
}

function hasApt(): boolean {
  return fs.existsSync("/usr/bin/apt-get") && fs.existsSync("/usr/bin/dpkg-query");
}

/** Run a command, its output kept and shown only when it fails. */
function sh(cmd: string, args: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd ?? "/", timeout: opts.timeoutMs ?? 15 * 60_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(" ")} failed:\n${`${stdout}\n${stderr}`.trim().split("\n").slice(-30).join("\n")}`));
        else resolve(stdout);
      },
    );
  });
}

let aptUpdated = false;
async function aptUpdate(log: (line: string) => void): Promise<void> {
  if (aptUpdated) return;
  log("apt-get update");
  await sh("apt-get", ["update", "-qq"]);
  aptUpdated = true;
}

async function aptInstall(pkgs: readonly string[], log: (line: string) => void): Promise<void> {
  const missing = pkgs.filter((p) => !isInstalled(p));
  if (missing.length === 0) return;
  await aptUpdate(log);
  log(`apt-get install ${missing.join(" ")}`);
  await sh("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing]);
}

function sourceVersions(showsrc: string): string[] {
  const out: string[] = [];
  let pkg = "";
  for (const line of showsrc.split("\n")) {
    if (line.startsWith("Package: ")) pkg = line.slice(9).trim();
    if (line.startsWith("Version: ") && pkg === "pgbouncer") out.push(line.slice(9).trim());
  }
  return out;
}

/**
 * The source version to build: the pinned one, or (once Debian has replaced it with a newer
 * security revision of the same upstream version, and the archive no longer serves it) that one.
 */
async function sourceVersionToBuild(log: (line: string) => void): Promise<string> {
  const available = async () => sourceVersions(await sh("apt-cache", ["showsrc", "pgbouncer"]).catch(() => ""));
  let versions = await available();
  if (!versions.some((v) => v.startsWith(`${PGBOUNCER_VERSION}-`))) {
    if (!fs.existsSync(TRIXIE_SOURCES_FILE)) {
      log(`adding Debian 13 source packages (deb-src only) to apt: ${TRIXIE_SOURCES_FILE}`);
      const mirrors = debianMirrors(aptSourceTexts());
      if (!mirrors) {
        throw new UserError(
          `apt on this machine names no Debian archive and security archive (in /etc/apt/sources.list or /etc/apt/sources.list.d/), which the Debian 13 source entry would use. ` +
            `Add deb-src entries for trixie and trixie-security to ${TRIXIE_SOURCES_FILE} by hand, then run: ${SETUP_COMMAND}`,
        );
      }
      fs.writeFileSync(TRIXIE_SOURCES_FILE, trixieSources(mirrors), { mode: 0o644 });
    }
    aptUpdated = false;
    await aptUpdate(log);
    versions = await available();
  }
  if (versions.includes(PGBOUNCER_DEBIAN_SOURCE)) return PGBOUNCER_DEBIAN_SOURCE;
  const same = versions.filter((v) => v.startsWith(`${PGBOUNCER_VERSION}-`)).sort();
  if (same.length > 0) {
    const chosen = same[same.length - 1];
    log(`the pinned source ${PGBOUNCER_DEBIAN_SOURCE} is no longer served; building Debian's newer revision ${chosen} of PgBouncer ${PGBOUNCER_VERSION}`);
    return chosen;
  }
  throw new UserError(
    `apt serves no source package of PgBouncer ${PGBOUNCER_VERSION} (found: ${versions.join(", ") || "none"}).\n` +
      `Check that ${TRIXIE_SOURCES_FILE} is there and 'apt-get update' succeeds, then run: ${SETUP_COMMAND}`,
  );
}

/** Build and install the supported PgBouncer into the prefix (skipped when it is there). */
export async function ensurePgbouncer(log: (line: string) => void): Promise<string> {
  if (hasSupportedPgbouncer()) return builtPgbouncer();
  const prefix = pgbouncerPrefix();
  if (!hasApt()) throw new UserError(`PgBouncer ${PGBOUNCER_VERSION} is built from Debian's source package, which needs apt (Debian or Ubuntu); elsewhere install PgBouncer ${PGBOUNCER_VERSION} yourself and set NBDB_PGBOUNCER to it.`);
  if (!isRoot()) {
    const missing = PGBOUNCER_BUILD_PACKAGES.filter((p) => !isInstalled(p));
    const haveSource = sourceVersions(await sh("apt-cache", ["showsrc", "pgbouncer"]).catch(() => "")).some((v) => v.startsWith(`${PGBOUNCER_VERSION}-`));
    if (missing.length > 0 || !haveSource) {
      throw new UserError(`PgBouncer ${PGBOUNCER_VERSION} is not installed, and building it needs root (${missing.length ? `packages ${missing.join(" ")}` : "Debian 13's deb-src entry"}). Run: ${SETUP_COMMAND}`);
    }
  }
  fs.mkdirSync(path.dirname(prefix), { recursive: true, mode: 0o755 });
  // One build at a time per prefix (two `nbdb up` at once wait for each other).
  const release = await lockfile.lock(path.dirname(prefix), { lockfilePath: `${prefix}.lock`, stale: 120_000, update: 10_000, retries: { retries: 60, factor: 1, minTimeout: 5000 } });
  try {
    if (hasSupportedPgbouncer()) return builtPgbouncer();
    log(`PgBouncer ${PGBOUNCER_VERSION} (the supported version) is missing: building it from Debian 13's source package into ${prefix}`);
    if (isRoot()) await aptInstall(PGBOUNCER_BUILD_PACKAGES, log);
    const version = await sourceVersionToBuild(log);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-pgbouncer-"));
    // apt's download sandbox user must be able to write here.
    fs.chmodSync(work, 0o755);
    try {
      log(`apt-get source pgbouncer=${version} (signed by Debian's archive key)`);
      await sh("apt-get", ["source", "-qq", `pgbouncer=${version}`], { cwd: work });
      const src = fs.readdirSync(work).map((d) => path.join(work, d)).find((d) => fs.statSync(d).isDirectory() && path.basename(d).startsWith("pgbouncer-"));
      if (!src) throw new Error(`apt-get source left no pgbouncer-* directory in ${work}`);
      log(`./configure --prefix=${prefix} --with-cares && make && make install`);
      versionCache.delete(binaryIn(prefix));
      fs.rmSync(markerFile(), { force: true });
      await sh("./configure", [`--prefix=${prefix}`, "--with-cares", "--without-systemd", "--without-pam"], { cwd: src });
      await sh("make", [`-j${Math.max(1, os.cpus().length)}`], { cwd: src });
      await sh("make", ["install"], { cwd: src });
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    versionCache.delete(binaryIn(prefix));
    const built = pgbouncerVersionOf(binaryIn(prefix));
    if (built !== PGBOUNCER_VERSION) throw new Error(`the build installed ${binaryIn(prefix)}, but it reports version ${built ?? "none"} instead of ${PGBOUNCER_VERSION}`);
    fs.writeFileSync(markerFile(), `${version}\n`);
    log(`installed PgBouncer ${PGBOUNCER_VERSION} (Debian source ${version}): ${builtPgbouncer()}`);
    return builtPgbouncer();
  } finally {
    await release().catch(() => undefined);
  }
}

/** The newest PostgreSQL 15+ server Debian's layout holds. */
function hasPostgresServer(): boolean {
  if (process.env.NBDB_PG_BINDIR) return true;
  const root = "/usr/lib/postgresql";
  return fs.existsSync(root) && fs.readdirSync(root).some((v) => Number(v) >= 15 && fs.existsSync(path.join(root, v, "bin", "postgres")));
}

export interface SetupReport {
  /** What was installed, one line each (empty when everything was there). */
  readonly installed: string[];
}

/**
 * Make this machine able to run the local stack: PostgreSQL 15 with pg_cron, and the supported
 * PgBouncer. Installs what is missing when it runs as root with apt; otherwise throws a UserError
 * naming the one command to run (for the server) or leaves out pg_cron (optional: maintenance is
 * then run by `nbdb maintain`).
 */
export async function ensureSystem(log: (line: string) => void): Promise<SetupReport> {
  const installed: string[] = [];
  const canInstall = isRoot() && hasApt();
  if (hasApt()) {
    const missing = SERVER_PACKAGES.filter((p) => !isInstalled(p)).filter((p) => p !== "postgresql-15" || !hasPostgresServer());
    if (missing.length > 0) {
      if (canInstall) {
        await aptInstall(missing, log);
        installed.push(...missing);
      } else if (missing.includes("postgresql-15")) {
        throw new UserError(`PostgreSQL 15 is not installed. Run: ${SETUP_COMMAND}`);
      }
    }
  } else if (!hasPostgresServer()) {
    throw new UserError("PostgreSQL 15+ server binaries are missing in /usr/lib/postgresql/<version>/bin; install them, or set NBDB_PG_BINDIR to them.");
  }
  if (!process.env.NBDB_PGBOUNCER && !hasSupportedPgbouncer()) {
    await ensurePgbouncer(log);
    installed.push(`pgbouncer ${PGBOUNCER_VERSION} (${pgbouncerPrefix()})`);
  }
  return { installed };
}

/**
 * `nbdb setup --for-tests` (what `npm test` runs first): the local stack's needs, and the test
 * suite's packages; as root with apt it installs what is missing, otherwise it names the command.
 */
export async function ensureTestSystem(log: (line: string) => void): Promise<SetupReport> {
  const report = await ensureSystem(log);
  const missing = hasApt() ? TEST_PACKAGES.filter((p) => !isInstalled(p)) : [];
  const installed = [...report.installed];
  if (missing.length > 0) {
    if (!(isRoot() && hasApt())) {
      throw new UserError(`the test suite needs ${missing.join(", ")}. Run: sudo npx nbdb setup --for-tests`);
    }
    await aptInstall(missing, log);
    installed.push(...missing);
  }
  if (!installedPgbouncerExporter()) {
    if (!fs.existsSync(DEBIAN_PYTHON)) throw new UserError(`PgBouncer's exporter is installed with Debian's Python (${DEBIAN_PYTHON}), which is missing. Run: sudo npx nbdb setup --for-tests`);
    installed.push(`prometheus-pgbouncer-exporter ${PGBOUNCER_EXPORTER_VERSION} (${path.dirname(path.dirname(await ensurePgbouncerExporter(log)))})`);
  }
  return { installed };
}

/*
 * PgBouncer's metrics exporter (test/monitoring.test.ts; `nbdb up` runs it wherever it is installed):
 * the pins of infra/topology/monitoring.ts (PGBOUNCER_EXPORTER_REQUIREMENTS), installed with
 * --no-deps into a private virtual environment of Debian's Python; its PostgreSQL driver is Debian's
 * python3-psycopg2, seen through --system-site-packages (PGBOUNCER_EXPORTER_DRIVER_VERSION says why).
 */
/** Debian's Python: the virtual environment is made with it (never another Python on the PATH). */
const DEBIAN_PYTHON = "/usr/bin/python3";

/** Where it is installed, then looked for (NBDB_PGBOUNCER_EXPORTER_PREFIX overrides both, like NBDB_PGBOUNCER_PREFIX). */
function pgbouncerExporterPrefixes(): string[] {
  if (process.env.NBDB_PGBOUNCER_EXPORTER_PREFIX) return [path.resolve(process.env.NBDB_PGBOUNCER_EXPORTER_PREFIX)];
  const name = `pgbouncer-exporter-${PGBOUNCER_EXPORTER_VERSION}`;
  return [...new Set([path.join(installBase(), name), path.join(MACHINE_PREFIX_BASE, name)])];
}

const exporterBinIn = (prefix: string) => path.join(prefix, "bin", "pgbouncer-exporter");

function finishedExporterInstall(prefix: string): boolean {
  const marker = markerIn(prefix);
  return fs.existsSync(marker) && fs.readFileSync(marker, "utf8") === PGBOUNCER_EXPORTER_REQUIREMENTS.join("\n") + "\n" && fs.existsSync(exporterBinIn(prefix));
}

/** The installed PgBouncer exporter's command, or undefined when nbdb setup --for-tests has not installed it. */
export function installedPgbouncerExporter(): string | undefined {
  const prefix = pgbouncerExporterPrefixes().find(finishedExporterInstall);
  return prefix ? exporterBinIn(prefix) : undefined;
}

/** Install the PgBouncer exporter into its virtual environment (skipped when it is there). */
export async function ensurePgbouncerExporter(log: (line: string) => void): Promise<string> {
  const done = installedPgbouncerExporter();
  if (done) return done;
  const prefix = pgbouncerExporterPrefixes()[0];
  fs.mkdirSync(path.dirname(prefix), { recursive: true, mode: 0o755 });
  const release = await lockfile.lock(path.dirname(prefix), { lockfilePath: `${prefix}.lock`, stale: 120_000, update: 10_000, retries: { retries: 60, factor: 1, minTimeout: 5000 } });
  try {
    if (finishedExporterInstall(prefix)) return exporterBinIn(prefix);
    log(`installing prometheus-pgbouncer-exporter ${PGBOUNCER_EXPORTER_VERSION} into ${prefix} (a virtual environment of Debian's Python)`);
    // A half-made environment (a crash) is made again from nothing.
    fs.rmSync(prefix, { recursive: true, force: true });
    await sh(DEBIAN_PYTHON, ["-m", "venv", "--system-site-packages", prefix]);
    await sh(path.join(prefix, "bin", "pip"), ["install", "--quiet", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", ...PGBOUNCER_EXPORTER_REQUIREMENTS]);
    // The driver comes from Debian; the exporter's own modules must import with it.
    await sh(path.join(prefix, "bin", "python"), ["-c", PGBOUNCER_EXPORTER_IMPORT_CHECK]);
    fs.writeFileSync(markerIn(prefix), PGBOUNCER_EXPORTER_REQUIREMENTS.join("\n") + "\n");
    log(`installed prometheus-pgbouncer-exporter ${PGBOUNCER_EXPORTER_VERSION}: ${exporterBinIn(prefix)}`);
    return exporterBinIn(prefix);
  } finally {
    await release().catch(() => undefined);
  }
}
