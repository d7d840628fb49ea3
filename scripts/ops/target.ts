// Which database a command works on, and the URL of the one role it connects as: a local stack
// (`--stack`, its outputs.json), a deployed Pulumi stack (`--pulumi-stack`, its stack outputs read
// with the pulumi CLI), or a libpq connection (`--service` / `--pg-env`: a pg_service.conf entry
// and the PG* environment variables, as psql would take them). docs/deployed.md.
import { execFile } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { StackOutputs } from "../../client/outputs";
import type { OptionSpec } from "../commands/command";
import { UserError } from "../errors";
import { readOutputs, writePrivate } from "../local/state";
import { toolchainBinDir } from "../toolchain/pulumi";

/** The connections of the outputs contract (docs/contracts.md) a command may ask for, and their login role. */
export const CONNECTION_ROLES = { migrator: "nb_migrator", auditor: "nb_auditor" } as const;
export type Connection = keyof typeof CONNECTION_ROLES;

export interface TargetOptions {
  readonly stack: string;
  readonly pulumiStack?: string;
  readonly service?: string;
  readonly pgEnv?: boolean;
}

export interface Target {
  /** How the target is named in messages: the stack, or the libpq service / environment. */
  readonly name: string;
  readonly kind: "local" | "pulumi" | "libpq";
  /** The URL of the connection's role. */
  url(connection: Connection): string;
}

/** The options every command that works on deployed stacks takes besides `--stack` (scripts/nbdb.ts adds them to a command with `target`). */
export const TARGET_OPTIONS: readonly OptionSpec[] = [
  { flags: "--pulumi-stack <name>", help: "a deployed stack: its Pulumi stack outputs (pulumi stack output --json --show-secrets, run here) instead of a local stack" },
  { flags: "--service <name>", help: "a libpq service of pg_service.conf ($PGSERVICEFILE, ~/.pg_service.conf); <name>-migrator / <name>-auditor are used per role when <name> itself is no entry" },
  { flags: "--pg-env", help: "connect with the PG* environment variables (PGSERVICE, PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT...)" },
];

/** The target of a command's options; `stackGiven` says whether --stack was on the command line. */
export async function resolveTarget(o: TargetOptions, stackGiven: boolean): Promise<Target> {
  const chosen = [stackGiven && "--stack", o.pulumiStack !== undefined && "--pulumi-stack", o.service !== undefined && "--service", o.pgEnv && "--pg-env"].filter(Boolean);
  if (chosen.length > 1) throw new UserError(`${chosen.join(" and ")} name different databases: give one of them.`);
  if (o.pulumiStack !== undefined) return pulumiTarget(o.pulumiStack);
  if (o.service !== undefined || o.pgEnv) return libpqTarget(o.service ?? process.env.PGSERVICE);
  const outputs = readOutputs(o.stack);
  return { name: o.stack, kind: "local", url: (c) => outputs.connections[c] };
}

// --- Pulumi stacks -------------------------------------------------------------------------------

/** The pulumi CLI: the one on PATH, else the project's toolchain build (docs/engine.md). */
export function pulumiCli(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, "pulumi");
    if (isExecutable(file)) return file;
  }
  const built = path.join(toolchainBinDir(), "pulumi");
  return isExecutable(built) ? built : undefined;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** `pulumi stack output --json --show-secrets --stack <name>`, run in the current directory (the Pulumi project's). */
export async function pulumiStackOutputs(stack: string): Promise<Record<string, unknown>> {
  const cli = pulumiCli();
  if (!cli) throw new UserError(`--pulumi-stack needs the pulumi CLI: none on PATH or in ${toolchainBinDir()}. Install Pulumi, or put its bin directory on PATH.`);
  const args = ["stack", "output", "--json", "--show-secrets", "--stack", stack];
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(cli, args, { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "1" } }, (err, out, stderr) => {
      if (!err) return resolve(out);
      const said = (stderr || err.message).trim().split("\n").filter(Boolean).slice(-2).join(" ");
      reject(new UserError(`pulumi stack output --stack ${stack} failed in ${process.cwd()}: ${said}. Run nbdb in the Pulumi project's directory, check the name (pulumi stack ls) and the backend (pulumi login).`));
    }),
  );
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (e) {
    throw new UserError(`pulumi stack output --json --stack ${stack} printed no JSON (${(e as Error).message}): is ${cli} the Pulumi CLI?`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new UserError(`Pulumi stack '${stack}' has no outputs: deploy it with pulumi up first.`);
  return parsed as Record<string, unknown>;
}

async function pulumiTarget(stack: string): Promise<Target> {
  const outputs = await pulumiStackOutputs(stack);
  const connections = outputs.connections as Record<string, unknown> | undefined;
  const tls = (outputs.tls ?? {}) as StackOutputs["tls"] & object;
  return {
    name: stack,
    kind: "pulumi",
    url(c) {
      const url = connections && typeof connections === "object" ? connections[c] : undefined;
      if (typeof url !== "string" || !/^postgres(ql)?:\/\//.test(url)) {
        throw new UserError(`Pulumi stack '${stack}' has no output connections.${c} (the ${CONNECTION_ROLES[c]} URL of a neuralblitz-db stack, docs/contracts.md): is it a stack of this program, deployed with pulumi up?`);
      }
      return withLocalCa(url, tls, stack);
    },
  };
}

/**
 * The URLs name their CA file on the machine that ran `pulumi up`. Where that file is not on this
 * machine, the CA's PEM from the `tls` output (the server's or the pooler's, whichever the URL
 * names) is written to a private file of its own and the URL points there.
 */
function withLocalCa(url: string, tls: NonNullable<StackOutputs["tls"]>, stack: string): string {
  const u = new URL(url);
  const file = u.searchParams.get("sslrootcert");
  if (file === null || fs.existsSync(file)) return url;
  const pem = file === tls.serverCaFile ? tls.serverCa : file === tls.poolerCaFile ? tls.poolerCa : undefined;
  if (!pem) throw new UserError(`Pulumi stack '${stack}': its URLs verify against ${file}, which is not on this machine, and its tls output carries no certificate for it: copy that file here.`);
  const local = path.join(os.tmpdir(), `nbdb-ca-${createHash("sha256").update(pem).digest("hex").slice(0, 16)}.pem`);
  writePrivate(local, pem);
  u.searchParams.set("sslrootcert", local);
  return u.toString();
}

// --- libpq services and environment --------------------------------------------------------------

/** libpq's environment variables for the keywords nbdb passes on (the PostgreSQL manual, "Environment Variables"). */
const LIBPQ_ENV: Readonly<Record<string, string>> = {
  host: "PGHOST",
  port: "PGPORT",
  dbname: "PGDATABASE",
  user: "PGUSER",
  password: "PGPASSWORD",
  sslmode: "PGSSLMODE",
  sslrootcert: "PGSSLROOTCERT",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  application_name: "PGAPPNAME",
  options: "PGOPTIONS",
  connect_timeout: "PGCONNECT_TIMEOUT",
};

/** The service files libpq reads, in its order: the user's, then the system's. */
export function serviceFiles(): string[] {
  const user = process.env.PGSERVICEFILE ?? path.join(os.homedir(), ".pg_service.conf");
  return [user, path.join(process.env.PGSYSCONFDIR ?? "/etc/postgresql-common", "pg_service.conf")];
}

/**
 * The entries of a pg_service.conf as libpq reads it: a line trimmed of spaces at both ends; `#`
 * lines are comments; `[name]` starts an entry; in an entry, `key=value` split at the first `=`
 * with nothing else trimmed (libpq refuses `key = value`), the first value of a key kept; lines
 * before the first entry are skipped. Hand-written rather than an INI library: those trim around
 * `=` and treat `;` and quotes specially, libpq does not.
 */
export function parseServiceFile(text: string, file: string): Map<string, Map<string, string>> {
  const entries = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    if (line.startsWith("[")) {
      const name = line.endsWith("]") ? line.slice(1, -1) : "";
      current = entries.get(name) ?? new Map();
      entries.set(name, current);
      return;
    }
    if (!current) return;
    const eq = line.indexOf("=");
    const key = eq < 0 ? "" : line.slice(0, eq);
    if (!/^[a-z_]+$/.test(key)) throw new UserError(`${file}:${i + 1} is no 'keyword=value' line (libpq refuses it too, spaces around '=' included): fix the file.`);
    if (!current.has(key)) current.set(key, line.slice(eq + 1));
  });
  return entries;
}

function findService(name: string, connection: Connection): { keywords: Map<string, string>; entry: string; file: string } {
  const known: string[] = [];
  for (const wanted of [name, `${name}-${connection}`]) {
    for (const file of serviceFiles().filter((f) => fs.existsSync(f))) {
      const entries = parseServiceFile(fs.readFileSync(file, "utf8"), file);
      const keywords = entries.get(wanted);
      if (keywords) return { keywords, entry: wanted, file };
      known.push(...entries.keys());
    }
  }
  const where = serviceFiles().join(" or ");
  throw new UserError(
    `no libpq service '${name}' (nor '${name}-${connection}') in ${where}` +
      (known.length ? `; it has ${[...new Set(known)].join(", ")}` : "") +
      `. Set PGSERVICEFILE to the stack's file (a local stack's is .nbdb/<stack>/pg_service.conf).`,
  );
}

/** The connection of a service (if any) and the PG* variables, as libpq takes them: the service's keywords first, the environment for the rest. */
function libpqTarget(service: string | undefined): Target {
  return {
    name: service ? `service ${service}` : "the PG* environment",
    kind: "libpq",
    url(c) {
      const keywords = new Map<string, string>();
      let source = "PGUSER";
      if (service) {
        const found = findService(service, c);
        for (const [k, v] of found.keywords) keywords.set(k, v);
        if (found.keywords.has("user")) source = `the user of service ${found.entry} (${found.file})`;
      }
      for (const [k, env] of Object.entries(LIBPQ_ENV)) if (!keywords.has(k) && process.env[env]) keywords.set(k, process.env[env]!);
      const role = CONNECTION_ROLES[c];
      const user = keywords.get("user") ?? os.userInfo().username;
      if (user !== role) {
        throw new UserError(
          `${source} is '${user}', but this command connects as ${role}, its least role: ` +
            (service ? `use a service of ${role}'s login (nbdb's pg_service.conf names it <stack>-${c}).` : `set PGUSER=${role} and its password (PGPASSWORD or ~/.pgpass).`),
        );
      }
      return libpqUrl(keywords);
    },
  };
}

/**
 * A postgresql:// URL node-postgres reads as libpq would read the keywords: every keyword a query
 * parameter, the database in the path, and `uselibpqcompat=true` so that sslmode means what it
 * means to libpq. Without a password node-postgres reads ~/.pgpass (PGPASSFILE) as libpq does.
 */
export function libpqUrl(keywords: ReadonlyMap<string, string>): string {
  const query = new URLSearchParams();
  for (const [k, v] of keywords) if (k !== "dbname" && k !== "service") query.set(k, v);
  query.set("uselibpqcompat", "true");
  return `postgresql:///${encodeURIComponent(keywords.get("dbname") ?? keywords.get("user") ?? os.userInfo().username)}?${query.toString()}`;
}
