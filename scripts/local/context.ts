// Everything a local-stack operation needs to know about where it runs.
import * as os from "os";
import * as path from "path";
import { Binaries, ServerUser, findBinaries, serverUser } from "./system";
import { stackDir } from "./state";
import { UserError } from "../errors";

export interface LocalContext {
  readonly stack: string;
  readonly dir: string;
  readonly bins: Binaries;
  readonly user: ServerUser;
  /** Say what is happening (progress lines for the user). */
  readonly log: (line: string) => void;
}

export function localContext(stack: string, log: (line: string) => void): LocalContext {
  return { stack, dir: stackDir(stack), bins: findBinaries(), user: serverUser(), log };
}

export function bin(ctx: LocalContext, name: string): string {
  return path.join(ctx.bins.pgBinDir, name);
}

const GiB = 1024 ** 3;

/**
 * How many replicas this machine can hold next to its primary: four per core, at most eight, and
 * each server needs half a GiB of memory. Fixed per machine, so that scaling within it never needs
 * the primary's restart-only settings (max_wal_senders) to change.
 */
export function replicaLimit(): number {
  const byCpu = Math.min(8, os.cpus().length * 4);
  const byMemory = Math.floor(os.totalmem() / (GiB / 2)) - 1;
  return Math.max(0, Math.min(byCpu, byMemory));
}

export function parseReplicaCount(raw: string | number): number {
  const limit = replicaLimit();
  const text = String(raw).trim();
  if (!/^\d+$/.test(text)) {
    throw new UserError(`--replicas must be a whole number from 0 to ${limit}, got '${raw}'.`);
  }
  const n = Number(text);
  if (n > limit) {
    throw new UserError(
      `--replicas ${n} is more than this machine can hold: at most ${limit} ` +
        `(4 per CPU core, at most 8, half a GiB of memory each; this machine has ${os.cpus().length} cores and ${(os.totalmem() / GiB).toFixed(1)} GiB).`,
    );
  }
  return n;
}

/** Each server's share of the machine: enough that the largest topology fits at once. */
export function nodeSizing(): { memoryBytes: number; cpus: number } {
  return { memoryBytes: os.totalmem() / (replicaLimit() + 2), cpus: os.cpus().length };
}
