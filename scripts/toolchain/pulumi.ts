// `npm run --silent pulumi:toolchain`: the Pulumi engine and providers for the project's own engine
// tests, built from the Go module proxy with the ordinary `go` command, pinned to the versions in
// package-lock.json. Users run `pulumi` as they already have it; this is not an installer for them.
//
// Each binary is built from a small wrapper module of ours (in the cache, never in the repo) that
// requires the released module and restates its non-local `replace` directives: `go install
// module@version` refuses modules that carry any. What the proxy refuses is reported by module with
// the proxy's own answer, and the binaries that could be built stay usable.
//
//   --engine   only what the engine tests need: the CLI and the dynamic-provider launcher (the
//              tests run programs through the Automation API's own language runtime, `--client`)
//   --dir D    the cache directory (default $NBDB_TOOLCHAIN_DIR or ~/.cache/neuralblitz-db/pulumi)
//
// The last line printed is the directory of the binaries. Exit code 0 when every asked component is
// there, 1 when the proxy refused some (named above it), 2 on any other error.
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";

const exec = promisify(execFile);
const REPO = path.join(__dirname, "..", "..");

export interface Component {
  /** The binary's file name in the bin directory. */
  readonly binary: string;
  /** The released Go module and version. */
  readonly module: string;
  readonly version: string;
  /** The main package inside the module, relative to it ("." for the module root). */
  readonly pkg: string;
  /** -ldflags that stamp the version, as the release builds do. */
  readonly ldflags?: string;
  /** Needed by the engine tests (the rest is built only without --engine). */
  readonly engine: boolean;
}

/** The exact versions of the npm packages whose Go counterparts the toolchain builds. */
export function lockedVersions(lockFile = path.join(REPO, "package-lock.json")): Record<"pulumi" | "postgresql" | "random", string> {
  const lock = JSON.parse(fs.readFileSync(lockFile, "utf8")) as { packages: Record<string, { version?: string }> };
  const version = (name: string): string => {
    const v = lock.packages[`node_modules/${name}`]?.version;
    if (!v || !/^\d+\.\d+\.\d+$/.test(v)) throw new Error(`package-lock.json pins no exact version of ${name} (found ${v ?? "none"}): run npm install with an exact version first.`);
    return v;
  };
  return { pulumi: version("@pulumi/pulumi"), postgresql: version("@pulumi/postgresql"), random: version("@pulumi/random") };
}

export function components(v = lockedVersions()): Component[] {
  const sdkVersion = "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version";
  return [
    { binary: "pulumi", module: "github.com/pulumi/pulumi/pkg/v3", version: `v${v.pulumi}`, pkg: "cmd/pulumi", ldflags: `-X ${sdkVersion}=v${v.pulumi}`, engine: true },
    {
      binary: "pulumi-language-nodejs",
      module: "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3",
      version: `v${v.pulumi}`,
      pkg: ".",
      ldflags: `-X ${sdkVersion}=v${v.pulumi}`,
      engine: false,
    },
    {
      binary: "pulumi-resource-postgresql",
      module: "github.com/pulumi/pulumi-postgresql/provider/v3",
      version: `v${v.postgresql}`,
      pkg: "cmd/pulumi-resource-postgresql",
      ldflags: `-X github.com/pulumi/pulumi-postgresql/provider/v3/pkg/version.Version=v${v.postgresql}`,
      engine: false,
    },
    {
      binary: "pulumi-resource-random",
      module: "github.com/pulumi/pulumi-random/provider/v4",
      version: `v${v.random}`,
      pkg: "cmd/pulumi-resource-random",
      ldflags: `-X github.com/pulumi/pulumi-random/provider/v4/version.Version=v${v.random}`,
      engine: false,
    },
  ];
}

/** A tagged release, not the v0.0.0 placeholder a module requires only to replace it. */
function isRelease(version: string | undefined): boolean {
  return version !== undefined && /^v\d+\.\d+\.\d+$/.test(version) && version !== "v0.0.0";
}

/** The `require`d modules of a go.mod, by path, with their versions. */
function requiredVersions(lines: readonly string[]): Map<string, string> {
  const req = new Map<string, string>();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === "require (") {
      for (i++; i < lines.length && lines[i] !== ")"; i++) {
        const [mod, ver] = lines[i].split(/\s+/);
        if (mod && ver) req.set(mod, ver);
      }
    } else if (line.startsWith("require ")) {
      const [, mod, ver] = line.split(/\s+/);
      if (mod && ver) req.set(mod, ver);
    }
  }
  return req;
}

/**
 * The `replace` directives of a released go.mod, sorted by what a wrapper module can do with them:
 * a replacement by another module is restated as it is; a replacement by a directory of the same
 * repository whose module the release also requires at a served version (the SDK beside the CLI) is
 * dropped, since the required version is that directory at the release; any other local replacement
 * (a Terraform upstream in a git submodule) cannot be restated and is returned as such.
 */
export function restatableReplaces(goMod: string): { restate: string[]; dropped: string[]; local: string[] } {
  const lines = goMod.split("\n").map((l) => l.replace(/\/\/.*$/, "").trim());
  const directives: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === "replace (") {
      for (i++; i < lines.length && lines[i] !== ")"; i++) if (lines[i]) directives.push(lines[i]);
    } else if (lines[i].startsWith("replace ")) directives.push(lines[i].slice("replace ".length).trim());
  }
  const required = requiredVersions(lines);
  const out = { restate: [] as string[], dropped: [] as string[], local: [] as string[] };
  for (const d of directives) {
    const [from, to] = d.split("=>").map((x) => x.trim());
    const target = to ?? "";
    if (!(target.startsWith(".") || target.startsWith("/"))) out.restate.push(d);
    else if (isRelease(required.get(from.split(/\s+/)[0]))) out.dropped.push(d);
    else out.local.push(d);
  }
  return out;
}

/** The wrapper module that builds one component. */
export function wrapperGoMod(c: Component, replaces: readonly string[], goVersion: string): string {
  return [
    "// Generated by neuralblitz-db (scripts/toolchain/pulumi.ts); builds one released binary.",
    "module neuralblitz-db.local/toolchain",
    "",
    `go ${goVersion}`,
    "",
    `require ${c.module} ${c.version}`,
    "",
    ...replaces.map((r) => `replace ${r}`),
    "",
  ].join("\n");
}

class Refused extends Error {}

async function go(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await exec("go", args, { cwd, env: { ...process.env, GOFLAGS: "-mod=mod", GOWORK: "off" }, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; code?: string | number };
    if (err.code === "ENOENT") throw new Error("the `go` command is not on PATH: install Go 1.25 or newer (Debian: golang, or the machine's own Go) and run again.");
    // `go mod download -json` reports a module it cannot get in the JSON's Error field.
    let text = `${err.stderr ?? ""}${err.stdout ?? ""}`.trim();
    try {
      text = (JSON.parse(err.stdout ?? "") as { Error?: string }).Error ?? text;
    } catch {
      // not JSON: keep the text
    }
    if (/403 Forbidden|404 Not Found|410 Gone|not available|unknown revision|invalid version/.test(text)) throw new Refused(text.split("\n").filter((l) => l.trim()).slice(0, 3).join(" / "));
    throw new Error(`go ${args.join(" ")} failed:\n${text}`);
  }
}

/** The version a built binary reports, or undefined when it is missing or reports none. */
async function reportedVersion(binary: string): Promise<string | undefined> {
  if (!fs.existsSync(binary)) return undefined;
  for (const args of [["version"], ["-version"], ["--version"]]) {
    try {
      const { stdout, stderr } = await exec(binary, args, { timeout: 20_000, env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "1" } });
      const m = /v?\d+\.\d+\.\d+/.exec(`${stdout}${stderr}`);
      if (m) return m[0].startsWith("v") ? m[0] : `v${m[0]}`;
    } catch {
      // try the next way of asking
    }
  }
  return undefined;
}

export interface ToolchainResult {
  readonly binDir: string;
  readonly built: string[];
  readonly skipped: string[];
  readonly refused: { component: string; module: string; answer: string }[];
}

/** Where the toolchain puts the binaries: `<cache>/v<pulumi version>/bin` (the cache: `dir`, $NBDB_TOOLCHAIN_DIR or ~/.cache/neuralblitz-db/pulumi). */
export function toolchainBinDir(dir?: string): string {
  const root = path.resolve(dir ?? process.env.NBDB_TOOLCHAIN_DIR ?? path.join(os.homedir(), ".cache", "neuralblitz-db", "pulumi"));
  return path.join(root, `v${lockedVersions().pulumi}`, "bin");
}

export async function buildToolchain(opts: { dir?: string; engineOnly?: boolean; log?: (line: string) => void } = {}): Promise<ToolchainResult> {
  const log = opts.log ?? (() => undefined);
  const versions = lockedVersions();
  const binDir = toolchainBinDir(opts.dir);
  const root = path.dirname(path.dirname(binDir));
  fs.mkdirSync(binDir, { recursive: true });
  const goVersion = (await go(["env", "GOVERSION"], root)).trim().replace(/^go/, "").replace(/^(\d+\.\d+).*/, "$1");
  const result: ToolchainResult = { binDir, built: [], skipped: [], refused: [] };

  for (const c of components(versions).filter((c) => c.engine || !opts.engineOnly)) {
    const binary = path.join(binDir, c.binary);
    if ((await reportedVersion(binary)) === c.version) {
      result.skipped.push(c.binary);
      continue;
    }
    const started = Date.now();
    const src = path.join(root, "src", c.binary);
    fs.rmSync(src, { recursive: true, force: true });
    fs.mkdirSync(src, { recursive: true });
    try {
      log(`${c.binary}: fetching ${c.module}@${c.version}`);
      const info = JSON.parse(await go(["mod", "download", "-json", `${c.module}@${c.version}`], src)) as { GoMod: string };
      const { restate, local } = restatableReplaces(fs.readFileSync(info.GoMod, "utf8"));
      if (local.length > 0) {
        // A local replacement (a submodule of the release's repository) is not in the module zip; the
        // wrapper cannot restate it as a path. Say which, so it can be restated as a module by hand.
        throw new Error(`${c.module}@${c.version} replaces by a local path (${local.join("; ")}): restate each as a module replacement in components().`);
      }
      fs.writeFileSync(path.join(src, "go.mod"), wrapperGoMod(c, restate, goVersion));
      fs.writeFileSync(path.join(src, "tools.go"), `//go:build tools\n\npackage tools\n\nimport _ "${path.posix.join(c.module, c.pkg)}"\n`);
      await go(["mod", "tidy"], src);
      log(`${c.binary}: building`);
      await go(["build", "-trimpath", ...(c.ldflags ? ["-ldflags", c.ldflags] : []), "-o", binary, path.posix.join(c.module, c.pkg)], src);
      const reported = await reportedVersion(binary);
      if (reported !== c.version) throw new Error(`${binary} reports version ${reported ?? "none"}, expected ${c.version}`);
      result.built.push(c.binary);
      log(`${c.binary}: built ${c.version} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      result.refused.push({ component: c.binary, module: `${c.module}@${c.version}`, answer: e.message });
      log(`${c.binary}: the Go module proxy refused ${c.module}@${c.version}: ${e.message}`);
    }
  }
  const launcher = path.join(binDir, "pulumi-resource-pulumi-nodejs");
  if (!fs.existsSync(launcher)) {
    // The launcher the engine starts for dynamic providers: a shell script of the SDK module
    // (nodejs/dist/) that runs @pulumi/pulumi's dynamic-provider entry point with the project's Node.js.
    const sdk = JSON.parse(await go(["mod", "download", "-json", `github.com/pulumi/pulumi/sdk/v3@v${versions.pulumi}`], root)) as { Dir: string };
    fs.copyFileSync(path.join(sdk.Dir, "nodejs", "dist", "pulumi-resource-pulumi-nodejs"), launcher);
    fs.chmodSync(launcher, 0o755);
    result.built.push("pulumi-resource-pulumi-nodejs");
  }
  return result;
}

async function main(argv: string[]): Promise<void> {
  const args = argv.slice(2);
  const dirAt = args.indexOf("--dir");
  const unknown = args.filter((a, i) => a !== "--engine" && a !== "--dir" && !(dirAt >= 0 && i === dirAt + 1));
  if (unknown.length > 0 || (dirAt >= 0 && !args[dirAt + 1])) {
    process.stderr.write(`pulumi:toolchain: unknown argument ${unknown[0] ?? "--dir needs a directory"}; usage: npm run --silent pulumi:toolchain [-- --engine] [-- --dir DIR]\n`);
    process.exitCode = 2;
    return;
  }
  const log = (line: string) => process.stderr.write(`pulumi:toolchain: ${line}\n`);
  try {
    const r = await buildToolchain({ dir: dirAt >= 0 ? args[dirAt + 1] : undefined, engineOnly: args.includes("--engine"), log });
    if (r.skipped.length) log(`already built at the pinned versions: ${r.skipped.join(", ")}`);
    for (const x of r.refused) log(`NOT BUILT ${x.component}: ${x.module} is not served by the Go module proxy`);
    if (r.refused.length) process.exitCode = 1;
    process.stdout.write(`${r.binDir}\n`);
  } catch (e) {
    log((e as Error).message);
    process.exitCode = 2;
  }
}

if (require.main === module) void main(process.argv);
