// pgbench with a custom script: the tps figures come from PostgreSQL's own load generator, run
// from the server's bin directory, connecting through libpq environment variables.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { libpqEnv } from "./db";
import { BenchContext } from "./types";

export interface PgbenchRun {
  /** The custom script (pgbench's script language: \set, SQL, one statement per line). */
  readonly script: string;
  readonly url: string;
  readonly clients: number;
  readonly seconds: number;
  /**
   * -t: transactions per client instead of --time=seconds. For many clients: pgbench counts its
   * connection phase into --time (1,000 SCRAM logins can outlast it on a loaded machine), while its
   * tps leaves that phase out either way.
   */
  readonly transactionsPerClient?: number;
  /** -C: a new connection for every transaction. */
  readonly connectPerTransaction?: boolean;
  /** pgbench -M: "prepared" sends each statement as a named prepared statement (what drivers do by default). Default simple. */
  readonly protocol?: "simple" | "extended" | "prepared";
  /** Extra libpq environment, e.g. PGOPTIONS for a session setting. */
  readonly env?: NodeJS.ProcessEnv;
}

export interface PgbenchResult {
  readonly tps: number;
  readonly latencyMs: number;
  readonly transactions: number;
  /** Failed transactions plus clients that aborted (lost their connection, were refused ...). */
  readonly errors: number;
  /** Average latency of each script line, in script order (pgbench -r). */
  readonly statementMs: { readonly ms: number; readonly text: string }[];
  readonly output: string;
}

function number(output: string, pattern: RegExp): number | undefined {
  const m = pattern.exec(output);
  return m ? Number(m[1]) : undefined;
}

export function parsePgbench(output: string): PgbenchResult {
  const tps = number(output, /^tps = ([\d.]+)/m);
  if (tps === undefined) throw new Error(`pgbench reported no tps:\n${output.trim()}`);
  const failed = number(output, /^number of failed transactions: (\d+)/m) ?? 0;
  const aborted = (output.match(/client \d+ aborted/g) ?? []).length;
  const statements = output.split(/^statement latencies in milliseconds.*$/m)[1] ?? "";
  const statementMs = [...statements.matchAll(/^\s+([\d.]+)\s+\d+\s+(.+)$/gm)].map((m) => ({ ms: Number(m[1]), text: m[2].trim() }));
  return {
    tps,
    latencyMs: number(output, /^latency average = ([\d.]+) ms/m) ?? 1000 / tps,
    transactions: number(output, /^number of transactions actually processed: (\d+)/m) ?? 0,
    errors: failed + aborted,
    statementMs,
    output,
  };
}

export async function pgbench(ctx: BenchContext, run: PgbenchRun): Promise<PgbenchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-pgbench-"));
  const scriptFile = path.join(dir, "script.sql");
  fs.writeFileSync(scriptFile, run.script);
  const args = ["--no-vacuum", "--report-per-command", `--client=${run.clients}`, `--jobs=${Math.min(run.clients, 2)}`, run.transactionsPerClient ? `--transactions=${run.transactionsPerClient}` : `--time=${run.seconds}`, `--file=${scriptFile}`];
  if (run.connectPerTransaction) args.push("--connect");
  if (run.protocol) args.push(`--protocol=${run.protocol}`);
  try {
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(path.join(ctx.pgBinDir, "pgbench"), args, { env: { ...process.env, ...libpqEnv(run.url), ...run.env }, stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      child.stdout.on("data", (d) => (text += d));
      child.stderr.on("data", (d) => (text += d));
      child.on("error", reject);
      // pgbench exits non-zero when clients aborted; the summary still says how many, which is the figure.
      child.on("close", () => resolve(text));
    });
    return parsePgbench(output);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
