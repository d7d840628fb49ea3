// The real Pulumi engine for tests: the CLI that `npm run pulumi:toolchain` builds, a file backend
// in a temporary directory, a passphrase secrets provider, no network. Programs run through the
// Automation API's own language runtime (the CLI's --client), so no language-host binary is needed;
// dynamic providers are started by the engine through the SDK's launcher, as in any deploy.
//
// Without the toolchain the engine tests are skipped on a developer machine (with the command that
// builds it) and fail in CI, where .ci/run builds it first.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as auto from "@pulumi/pulumi/automation";
import { toolchainBinDir } from "../scripts/toolchain/pulumi";

const REPO = path.join(__dirname, "..");

/** Where the toolchain put the binaries (its last line of output), or undefined when it has not run. */
export function engineBinDir(): string | undefined {
  const dir = process.env.NBDB_PULUMI_BIN ?? toolchainBinDir();
  return ["pulumi", "pulumi-resource-pulumi-nodejs"].every((b) => fs.existsSync(path.join(dir, b))) ? dir : undefined;
}

/** Call in a `before`: skips the suite where the toolchain is missing, except in CI. */
export function requireEngine(ctx: Mocha.Context): string {
  const dir = engineBinDir();
  if (dir) return dir;
  const how = "build it with: npm run --silent pulumi:toolchain -- --engine";
  if (process.env.CI) throw new Error(`the Pulumi engine toolchain is missing (CI must build it before the tests); ${how}`);
  console.log(`      (engine tests skipped: no Pulumi CLI built for this project; ${how})`);
  ctx.skip();
}

export interface EngineWorkspace {
  readonly stack: auto.Stack;
  /** The engine's state directory (file backend). */
  readonly backend: string;
  remove(): Promise<void>;
}

/**
 * A stack of an inline program on a fresh file backend. The working directory is a temporary one
 * whose node_modules is the project's, so the dynamic-provider launcher finds @pulumi/pulumi there
 * and Pulumi's settings files never land in the repository.
 */
export async function engineStack(binDir: string, opts: { project: string; stack: string; program: auto.PulumiFn; config?: Record<string, string> }): Promise<EngineWorkspace> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-engine-"));
  const workDir = path.join(root, "work");
  const backend = path.join(root, "state");
  for (const d of [workDir, backend, path.join(root, "home")]) fs.mkdirSync(d);
  fs.symlinkSync(path.join(REPO, "node_modules"), path.join(workDir, "node_modules"));
  const pulumiCommand = await auto.PulumiCommand.get({ root: path.dirname(binDir) });
  const stack = await auto.LocalWorkspace.createStack(
    { projectName: opts.project, stackName: opts.stack, program: opts.program },
    {
      workDir,
      pulumiCommand,
      pulumiHome: path.join(root, "home"),
      projectSettings: { name: opts.project, runtime: "nodejs", backend: { url: `file://${backend}` } },
      secretsProvider: "passphrase",
      envVars: {
        PULUMI_CONFIG_PASSPHRASE: "engine-tests",
        PULUMI_SKIP_UPDATE_CHECK: "1",
        PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
        PATH: `${binDir}:${process.env.PATH ?? ""}`,
      },
    },
  );
  for (const [key, value] of Object.entries(opts.config ?? {})) await stack.setConfig(key, { value });
  return {
    stack,
    backend,
    async remove() {
      await stack.workspace.removeStack(opts.stack, { force: true }).catch(() => undefined);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** The stack's state file as the file backend keeps it (secrets encrypted), parsed. */
export function rawState(ws: EngineWorkspace): { checkpoint: { latest?: { resources?: StateResource[] } } } {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === `${ws.stack.name}.json`) found.push(p);
    }
  };
  walk(ws.backend);
  if (found.length !== 1) throw new Error(`expected one state file for stack ${ws.stack.name} under ${ws.backend}, found ${found.length}`);
  return JSON.parse(fs.readFileSync(found[0], "utf8"));
}

export interface StateResource {
  readonly type: string;
  readonly urn: string;
  readonly outputs?: Record<string, unknown>;
}

/** The resources the engine's state holds for a stack (secrets still encrypted). */
export async function stateResources(ws: EngineWorkspace): Promise<StateResource[]> {
  return rawState(ws).checkpoint.latest?.resources ?? [];
}
