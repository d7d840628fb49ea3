// A local stack's state: `.nbdb/<stack>/state.json` (mode 0600) holds the ports chosen once, the
// generated passwords and how far the stack was built; `outputs.json` is the contract other code
// reads (docs/contracts.md, "Outputs").
import { createHash, randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { DATABASE, LOGIN_ROLES, LoginRoleName } from "../../schema/roles";
import { StackOutputs, connectionUrl, stackConnections } from "../../client/outputs";
import { UserError } from "../errors";
import { ServerUser, freePort, serverUser } from "./system";

export type { StackOutputs };

/** The local stack's outputs always carry the superuser connection and its one CA. */
export type LocalStackOutputs = StackOutputs & { connections: { admin: string }; tls: { caFile: string } };

export const SUPERUSER = "postgres";
const STACK_NAME = /^[a-z][a-z0-9-]{0,39}$/;

export interface StackState {
  readonly version: 1;
  readonly stack: string;
  passwords: Record<LoginRoleName | typeof SUPERUSER, string>;
  ports: { primary: number; pooler: number; replicas: number[]; exporters?: { postgres?: number; pgbouncer?: number } };
  /** Set once the primary holds the roles, the database and the pooler's lookup function. */
  primaryBootstrapped: boolean;
  /** The key of the encrypted columns; applications send it per transaction (client/). */
  dataKey: string;
  /** The replica count last asked for: what `up` without --replicas converges to. */
  replicas?: number;
  /**
   * Server settings over the shared ones (infra/topology/postgresSettings.ts), given to the first
   * `up` of a stack: tests use small WAL limits so that losing a slot takes seconds, not gigabytes.
   */
  settings?: Record<string, string | number>;
  /**
   * A switchover or failover under way (scripts/local/switchover.ts), written before it acts: the
   * next `nbdb up` (or the same command again) finishes it, or undoes a switchover not yet past the
   * promotion.
   */
  operation?: RoleChange;
}

export interface RoleChange {
  readonly kind: "switchover" | "failover";
  /** The replica promoted: its data becomes the primary's, the old primary's data becomes this replica. */
  readonly target: number;
  /** started → promoted (the target runs as a primary) → swapped (data directories exchanged, new primary up). */
  step: "started" | "promoted" | "swapped";
  readonly startedAt: string;
}

export const HOST = "127.0.0.1";

export function validateStackName(stack: string): string {
  if (!STACK_NAME.test(stack)) {
    throw new UserError(`invalid stack name '${stack}': use 1-40 lower-case letters, digits and '-', starting with a letter (e.g. local, review-42).`);
  }
  return stack;
}

/** True when every directory from `dir` up to `/` is searchable by `user` (owner, group or other bits). */
export function reachableBy(dir: string, user: { uid: number; gid: number }): boolean {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (fs.existsSync(d)) {
      const st = fs.statSync(d);
      const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
      if ((st.mode & bit) === 0) return false;
    }
    if (d === path.dirname(d)) return true;
  }
}

/** Where the stacks of a checkout go when the server user cannot reach it: one directory per checkout. */
export const UNREACHABLE_CHECKOUT_HOME = "/var/lib/neuralblitz-db/stacks";

/**
 * Where the stacks live: NBDB_HOME; else `.nbdb` in the working directory (the checkout), unless
 * nbdb runs as root and the server user (`postgres`) cannot reach it, as in root's 0700 home: then
 * a directory of this checkout under /var/lib/neuralblitz-db/stacks, which it can (`reason` says so).
 */
export function stackHome(): { dir: string; reason?: string } {
  if (process.env.NBDB_HOME) return { dir: path.resolve(process.env.NBDB_HOME) };
  const checkout = process.cwd();
  const local = path.join(checkout, ".nbdb");
  if (process.getuid?.() !== 0) return { dir: local };
  let server: ServerUser;
  try {
    server = serverUser();
  } catch {
    return { dir: local }; // no server user yet: findBinaries/setup say what to install first
  }
  if (reachableBy(checkout, server)) return { dir: local };
  const id = createHash("sha256").update(checkout).digest("hex").slice(0, 10);
  const dir = path.join(UNREACHABLE_CHECKOUT_HOME, `${path.basename(checkout).replace(/[^A-Za-z0-9._-]/g, "_")}-${id}`);
  return { dir, reason: `the server user '${server.name}' cannot reach ${checkout}, so this checkout's stacks live in ${dir} (NBDB_HOME chooses another place)` };
}

export function nbdbRoot(): string {
  return stackHome().dir;
}

export function stackDir(stack: string): string {
  return path.join(nbdbRoot(), validateStackName(stack));
}

export function knownStacks(): string[] {
  const root = nbdbRoot();
  if (!fs.existsSync(root)) return [];
  // A stack that lost its state.json is still a stack while its copy or its data is there.
  return fs
    .readdirSync(root)
    .filter((s) => STACK_NAME.test(s) && ["state.json", ".state.backup.json", "primary"].some((f) => fs.existsSync(path.join(root, s, f))))
    .sort();
}

/** The state of an existing stack, or a clear error listing the stacks that do exist. */
export function requireStack(stack: string): StackState {
  const state = loadState(stack);
  if (!state) {
    const known = knownStacks();
    throw new UserError(
      `no stack '${stack}' in ${nbdbRoot()}` +
        (known.length ? ` (known stacks: ${known.join(", ")}).` : " (no stacks yet).") +
        ` Create it with: npx nbdb up --stack ${stack}`,
    );
  }
  return state;
}

function stateFile(stack: string): string {
  return path.join(stackDir(stack), "state.json");
}

/** A copy of state.json written with it: what `up` restores the passwords and the data key from when state.json is lost. */
export function stateBackupFile(stack: string): string {
  return path.join(stackDir(stack), ".state.backup.json");
}

function parseState(file: string): StackState {
  const text = fs.readFileSync(file, "utf8");
  const s = JSON.parse(text) as StackState;
  if (!s || typeof s !== "object" || s.version !== 1 || typeof s.stack !== "string" || !s.ports || !s.passwords) {
    throw new Error("it does not hold a stack's state (version, stack, ports, passwords)");
  }
  return s;
}

/** The backup copy of a stack's state, when it is there and whole. */
export function loadStateBackup(stack: string): StackState | undefined {
  const file = stateBackupFile(stack);
  if (!fs.existsSync(file)) return undefined;
  try {
    return parseState(file);
  } catch {
    return undefined;
  }
}

export function loadState(stack: string): StackState | undefined {
  const file = stateFile(stack);
  if (!fs.existsSync(file)) return undefined;
  try {
    return parseState(file);
  } catch (e) {
    const backup = loadStateBackup(stack) ? ` ${stateBackupFile(stack)} holds a copy: npx nbdb up --stack ${stack} restores it from there.` : "";
    throw new UserError(
      `${file} is damaged (${(e as Error).message}).${backup || ` Restore it from a backup of yours; without it the stack's passwords and data key are lost, and the only way on is to delete the stack: npx nbdb down --stack ${stack} --purge --yes`}`,
    );
  }
}

/** Every port a stack in this home keeps, its servers running or not (a damaged state counts by its copy). */
export function keptPorts(): number[] {
  return knownStacks().flatMap((stack) => {
    let s: StackState | undefined;
    try {
      s = loadState(stack) ?? loadStateBackup(stack);
    } catch {
      s = loadStateBackup(stack);
    }
    return s ? [s.ports.primary, s.ports.pooler, ...s.ports.replicas, ...Object.values(s.ports.exporters ?? {})] : [];
  });
}

/** A port for a new server of a stack: free now, outside the ephemeral range, kept by no stack, none of `also`. */
export function newKeptPort(also: Iterable<number> = []): Promise<number> {
  return freePort([...keptPorts(), ...also]);
}

function password(): string {
  return randomBytes(24).toString("base64url");
}

export function newDataKey(): string {
  return randomBytes(32).toString("base64url");
}

/** Passwords for login roles the model gained since the stack was made (nb_monitor); true when any was added. */
export function addMissingPasswords(state: StackState): boolean {
  const missing = LOGIN_ROLES.filter((r) => !state.passwords[r]);
  for (const r of missing) state.passwords[r] = password();
  return missing.length > 0;
}

export function newState(stack: string, ports: { primary: number; pooler: number }): StackState {
  const passwords = Object.fromEntries([SUPERUSER, ...LOGIN_ROLES].map((r) => [r, password()])) as StackState["passwords"];
  return { version: 1, stack, passwords, ports: { ...ports, replicas: [] }, primaryBootstrapped: false, dataKey: newDataKey() };
}

/** Write a file readable by its owner only, atomically; returns false when the content was already there. */
export function writePrivate(file: string, content: string): boolean {
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) {
    throw new UserError(`${file} is a directory, where nbdb keeps a file: move it away (mv ${file} ${file}.moved) and run the command again.`);
  }
  if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === content) return false;
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  fs.renameSync(tmp, file);
  return true;
}

export function saveState(state: StackState): void {
  const text = JSON.stringify(state, null, 2) + "\n";
  // The copy first: whichever of the two a crash leaves half-written, the other is whole.
  writePrivate(stateBackupFile(state.stack), text);
  writePrivate(stateFile(state.stack), text);
}

/** The stack's certificates and keys (scripts/local/tls.ts). */
export function tlsDir(stack: string): string {
  return path.join(stackDir(stack), "tls");
}

/** The stack's CA certificate: what every URL in outputs.json verifies the servers with. */
export function caFile(stack: string): string {
  return path.join(tlsDir(stack), "ca.crt");
}

/** TLS options for a node-postgres client of the stack's servers: verified against the stack's CA. */
export function clientSsl(stack: string): { ca: string } {
  return { ca: fs.readFileSync(caFile(stack), "utf8") };
}

/** The stack's data key (never in outputs.json, which applications may share more widely). */
export function readDataKey(stack: string): string {
  return requireStack(stack).dataKey;
}

export function outputsOf(state: StackState): LocalStackOutputs {
  const { ports, passwords: pw } = state;
  const ca = caFile(state.stack);
  const primary = { host: HOST, port: ports.primary };
  const pooler = { host: HOST, port: ports.pooler };
  return {
    stack: state.stack,
    database: DATABASE,
    primary,
    replicas: ports.replicas.map((port) => ({ host: HOST, port })),
    pooler: { ...pooler, poolMode: "transaction" },
    connections: {
      // One CA signs the servers' and the pooler's certificates.
      ...stackConnections({ database: DATABASE, primary, pooler, passwords: pw, poolerCaFile: ca, serverCaFile: ca }),
      admin: connectionUrl(SUPERUSER, pw[SUPERUSER], primary, DATABASE, ca),
    },
    tls: { caFile: caFile(state.stack) },
  };
}

export function outputsFile(stack: string): string {
  return path.join(stackDir(stack), "outputs.json");
}

/** Read a stack's outputs.json (what clients, seed, verify and tests connect with). */
export function readOutputs(stack: string): LocalStackOutputs {
  const file = outputsFile(stack);
  const rewrite = `nbdb up writes it from the stack's state: npx nbdb up --stack ${stack}`;
  if (!fs.existsSync(file)) throw new UserError(`stack '${stack}' has no outputs (${file} is missing); ${rewrite}`);
  let outputs: LocalStackOutputs;
  try {
    outputs = JSON.parse(fs.readFileSync(file, "utf8")) as LocalStackOutputs;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "EISDIR" ? "is a directory" : `is not valid JSON (${(e as Error).message})`;
    throw new UserError(`${file} ${why}; ${why === "is a directory" ? `move it away (mv ${file} ${file}.moved), then ` : ""}${rewrite}`);
  }
  if (!outputs || typeof outputs !== "object" || !outputs.connections || !outputs.primary) {
    throw new UserError(`${file} does not hold a stack's outputs (no connections or primary); ${rewrite}`);
  }
  return outputs;
}
