// What `npm ci && npm start` meets on a new machine: the supported PgBouncer (built once by
// `nbdb setup`, refused when older), and a checkout in a directory the server user cannot reach.
import { expect } from "chai";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { PGBOUNCER_IMAGE } from "../infra/platform/images";
import { PGBOUNCER_VERSION, minorOf } from "../infra/topology/pgbouncerVersion";
import { renderPgbouncerIni } from "../infra/topology/pgbouncerIni";
import { status, up } from "../scripts/local/stack";
import { localContext } from "../scripts/local/context";
import { poolerVersion, stopPooler } from "../scripts/local/pooler";
import { chownToServer, run, waitFor } from "../scripts/local/system";
import { PGBOUNCER_EXPORTER_REQUIREMENTS } from "../infra/topology/monitoring";
import { builtPgbouncer, debianMirrors, ensurePgbouncerExporter, hasSupportedPgbouncer, installedPgbouncerExporter } from "../scripts/local/setup";
import { UNREACHABLE_CHECKOUT_HOME, reachableBy, requireStack, stackDir } from "../scripts/local/state";
import { query, uniqueStack } from "./helpers";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");

function nbdb(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: opts.env ?? process.env, cwd: opts.cwd, timeout: 170_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("a fresh machine", function () {
  it("has the supported PgBouncer installed by nbdb setup, which skips it when it is there", async function () {
    expect(hasSupportedPgbouncer(), `run: sudo npx nbdb setup (${builtPgbouncer()})`).to.equal(true);
    const r = await nbdb(["setup"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/everything the local stack needs is installed/);
    expect(r.stdout).to.include(`(${PGBOUNCER_VERSION})`);
    expect(r.stderr).to.not.match(/building|apt-get/);
  });

  it("pins the Docker/AWS PgBouncer image to the local stack's minor version", function () {
    const tag = /:v?(\d+\.\d+\.\d+)/.exec(PGBOUNCER_IMAGE)?.[1];
    expect(tag && minorOf(tag)).to.equal(minorOf(PGBOUNCER_VERSION));
  });

  it("renders max_prepared_statements and the startup parameter lines in their group, search_path neither tracked nor ignored", function () {
    const ini = renderPgbouncerIni({
      listenAddr: "127.0.0.1",
      listenPort: 6432,
      serverHost: "db",
      serverPort: 5432,
      database: "neuralblitz",
      authFile: "/x",
      poolMode: "transaction",
      maxClientConnections: 10,
      defaultPoolSize: 2,
    });
    const group = ini.split("; prepared statements and startup parameters\n")[1];
    expect(group, "the group's comment line").to.be.a("string");
    expect(group).to.match(/^max_prepared_statements = [1-9]\d*$/m);
    const listed = (key: string) => (new RegExp(`^${key} = (.*)$`, "m").exec(ini)?.[1] ?? "").split(",").map((s) => s.trim().toLowerCase());
    expect(listed("ignore_startup_parameters")).to.include.members(["extra_float_digits", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"]);
    for (const key of ["ignore_startup_parameters", "track_extra_parameters"]) {
      expect(listed(key)).to.not.include("search_path");
      // Ignoring `options` would silently drop every -c setting inside it.
      expect(listed(key)).to.not.include("options");
    }
  });

  it("refuses a PgBouncer older than the supported one, naming the command that fixes it, before creating anything", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-oldpgb-"));
    const fake = path.join(dir, "pgbouncer");
    fs.writeFileSync(fake, "#!/bin/sh\necho 'PgBouncer 1.18.0'\necho 'libevent 2.1.12-stable'\n", { mode: 0o755 });
    const fresh = uniqueStack("oldpgb");
    try {
      const r = await nbdb(["up", "--stack", fresh], { env: { ...process.env, NBDB_PGBOUNCER: fake } });
      expect(r.code).to.equal(2);
      expect(r.stderr).to.include(`is PgBouncer 1.18.0, older than the supported ${PGBOUNCER_VERSION}`);
      expect(r.stderr).to.include("sudo npx nbdb setup");
      expect(fs.existsSync(stackDir(fresh))).to.equal(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("a checkout in root's 0700 home", function () {
    let parent: string;
    let checkout: string;
    let env: NodeJS.ProcessEnv;
    const stack = uniqueStack("rootonly");

    before(function () {
      if (process.getuid?.() !== 0) this.skip();
      parent = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-roothome-"));
      fs.chmodSync(parent, 0o700);
      checkout = path.join(parent, "neuralblitz-db");
      fs.mkdirSync(checkout);
      env = { ...process.env };
      delete env.NBDB_HOME;
    });

    after(async function () {
      if (!checkout) return;
      await nbdb(["down", "--stack", stack, "--purge", "--yes"], { env, cwd: checkout });
      for (const d of fs.existsSync(UNREACHABLE_CHECKOUT_HOME) ? fs.readdirSync(UNREACHABLE_CHECKOUT_HOME) : []) {
        if (d.startsWith("neuralblitz-db-") && fs.readdirSync(path.join(UNREACHABLE_CHECKOUT_HOME, d)).length === 0) fs.rmdirSync(path.join(UNREACHABLE_CHECKOUT_HOME, d));
      }
      fs.rmSync(parent, { recursive: true, force: true });
    });

    it("brings the stack up in a directory the server user reaches, and says where", async function () {
      expect(reachableBy(checkout, { uid: 9999, gid: 9999 })).to.equal(false);
      const r = await nbdb(["up", "--stack", stack, "--replicas", "0"], { env, cwd: checkout });
      expect(r.code, r.stderr).to.equal(0);
      const said = /this checkout's stacks live in (\S+)/.exec(r.stderr);
      expect(said, r.stderr).to.not.equal(null);
      const home = said![1];
      expect(home.startsWith(UNREACHABLE_CHECKOUT_HOME + "/")).to.equal(true);
      expect(fs.existsSync(path.join(checkout, ".nbdb"))).to.equal(false);
      const outputs = JSON.parse(fs.readFileSync(path.join(home, stack, "outputs.json"), "utf8"));
      expect(r.stdout).to.include(path.join(home, stack, "outputs.json"));
      const [row] = await query<{ u: string }>(outputs.connections.app, "SELECT current_user AS u");
      expect(row.u).to.equal("nb_app");
      // Every later command of this checkout finds the stack there.
      const st = await nbdb(["status", "--stack", stack, "--json"], { env, cwd: checkout });
      expect(st.code, st.stderr).to.equal(0);
      expect(JSON.parse(st.stdout).pooler).to.include({ running: true, version: PGBOUNCER_VERSION });
    });
  });

  it("restarts a pooler left running by an older PgBouncer (a stack from before the upgrade) on the supported one", async function () {
    // Debian 12's PgBouncer 1.18, where installed: the one such stacks ran.
    const old = "/usr/sbin/pgbouncer";
    if (!fs.existsSync(old)) this.skip();
    const stack = uniqueStack("oldpool");
    await up({ stack, replicas: 0, bundles: false });
    const ctx = localContext(stack, () => undefined);
    const state = requireStack(stack);
    await stopPooler(ctx);
    // The settings 1.18 knows: without the group it would refuse to start with.
    const dir = path.join(stackDir(stack), "pgbouncer");
    const ini = fs.readFileSync(path.join(dir, "pgbouncer.ini"), "utf8").split("; prepared statements and startup parameters\n");
    const oldIni = path.join(dir, "old.ini");
    fs.writeFileSync(oldIni, ini[0] + ini[1].split("\n").filter((l) => !/^(max_prepared_statements|track_extra_parameters|ignore_startup_parameters) =/.test(l)).join("\n"), { mode: 0o600 });
    chownToServer(oldIni, ctx.user);
    await run(old, ["-d", oldIni], { as: ctx.user });
    await waitFor("the old pgbouncer", 15_000, async () => ((await poolerVersion(state).catch(() => undefined)) === "1.18.0" ? true : undefined));
    const { changes } = await up({ stack, replicas: 0, bundles: false });
    expect(changes).to.include(`restarted pgbouncer: 1.18.0 → ${PGBOUNCER_VERSION}`);
    expect(await poolerVersion(state)).to.equal(PGBOUNCER_VERSION);
    expect((await up({ stack, replicas: 0, bundles: false })).changes).to.deep.equal([]);
  });

  it("shows the running pooler's version in nbdb status", async function () {
    const stack = uniqueStack("pgbver");
    const r = await nbdb(["up", "--stack", stack, "--replicas", "0"]);
    expect(r.code, r.stderr).to.equal(0);
    expect((await status(stack)).pooler.version).to.equal(PGBOUNCER_VERSION);
    const text = await nbdb(["status", "--stack", stack]);
    expect(text.stdout).to.match(new RegExp(`pgbouncer\\s*│\\s*${PGBOUNCER_VERSION.replace(/\./g, "\\.")}`));
  });
});

describe("nbdb setup --for-tests: PgBouncer's exporter in its virtual environment", function () {
  this.timeout(300_000);
  /** What pip installed into the environment itself (Debian's packages it sees are not listed). */
  const freeze = (bin: string) =>
    new Promise<string[]>((resolve, reject) =>
      execFile(path.join(path.dirname(bin), "pip"), ["freeze", "--local", "--disable-pip-version-check"], (err, out) => (err ? reject(err) : resolve(out.trim().split("\n").sort()))),
    );

  it("holds the exporter and its dependencies at exactly the pinned versions, and setup skips it when it is there", async function () {
    const bin = installedPgbouncerExporter();
    expect(bin, "run: sudo npx nbdb setup --for-tests").to.be.a("string");
    expect(await freeze(bin!)).to.deep.equal([...PGBOUNCER_EXPORTER_REQUIREMENTS].sort());
    const r = await nbdb(["setup", "--for-tests"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.not.match(/installing prometheus-pgbouncer-exporter/);
  });

  it("installs it into an empty prefix, and makes a half-made environment again", async function () {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-pgbx-"));
    const saved = process.env.NBDB_PGBOUNCER_EXPORTER_PREFIX;
    process.env.NBDB_PGBOUNCER_EXPORTER_PREFIX = path.join(prefix, "venv");
    try {
      expect(installedPgbouncerExporter()).to.equal(undefined);
      const bin = await ensurePgbouncerExporter(() => undefined);
      expect(bin).to.equal(path.join(prefix, "venv", "bin", "pgbouncer-exporter"));
      expect(installedPgbouncerExporter()).to.equal(bin);
      // A crash before the marker: the environment counts as missing, and is made again from nothing.
      fs.rmSync(path.join(prefix, "venv", "NBDB-BUILD"));
      fs.rmSync(path.join(prefix, "venv", "lib"), { recursive: true });
      expect(installedPgbouncerExporter()).to.equal(undefined);
      expect(await ensurePgbouncerExporter(() => undefined)).to.equal(bin);
      expect(await freeze(bin)).to.deep.equal([...PGBOUNCER_EXPORTER_REQUIREMENTS].sort());
    } finally {
      if (saved === undefined) delete process.env.NBDB_PGBOUNCER_EXPORTER_PREFIX;
      else process.env.NBDB_PGBOUNCER_EXPORTER_PREFIX = saved;
      fs.rmSync(prefix, { recursive: true, force: true });
    }
  });
});

describe("nbdb setup's Debian 13 source entry", function () {
  it("uses the archive and security archive this machine's apt names, in either file format, and none when there is none", function () {
    const deb822 = [
      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
      "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
    ].join("\n");
    expect(debianMirrors([deb822])).to.deep.equal({ archive: "http://mirror.example/debian", security: "http://mirror.example/debian-security" });
    expect(debianMirrors(["deb http://m.example/debian bookworm main\ndeb [signed-by=/k.gpg] http://m.example/sec bookworm-security main\n"])).to.deep.equal({
      archive: "http://m.example/debian",
      security: "http://m.example/sec",
    });
    // No Debian suite at all (another distribution): setup says what to add instead of guessing a host.
    expect(debianMirrors(["deb http://archive.example/ubuntu jammy main\n"])).to.equal(undefined);
  });
});
