// `nbdb reset --stack S --yes`: a local stack rebuilt from nothing: down, purge, up (same replica
// count), seed. Refused for a stack marked as production (as `nbdb seed` decides it) and without
// --yes; a refusal changes nothing. Interrupted at any point, `nbdb up` heals it: before the purge
// the stack is as it was; after it `up` builds it anew (`nbdb start` then seeds it, as seed.json is
// written only once a seed completed), and an interrupted seed is replaced by the next one.
import { down, up } from "../local/stack";
import { LocalStackOutputs, requireStack } from "../local/state";
import { UserError } from "../errors";
import { isProtectedStack } from "../../infra/config";
import { seed } from "./seed";

export interface ResetOptions {
  readonly stack: string;
  readonly yes?: boolean;
  readonly scale?: number;
  readonly seed?: number;
  readonly log?: (line: string) => void;
  /** Where progress goes (default stderr); null for none. */
  readonly progressTo?: NodeJS.WriteStream | null;
  /** Where the Pulumi.<stack>.yaml files are (default: the repository). */
  readonly projectRoot?: string;
}

export interface ResetReport {
  readonly outputs: LocalStackOutputs;
  readonly replicas: number;
  readonly seededRows: number;
}

export async function reset(opts: ResetOptions): Promise<ResetReport> {
  const log = opts.log ?? (() => undefined);
  if (isProtectedStack(opts.stack, opts.projectRoot)) {
    throw new UserError(
      `stack '${opts.stack}' is marked as production (Pulumi.${opts.stack}.yaml sets deletionProtection: true): nbdb reset deletes all of a stack's data and is refused for it. Nothing was changed.`,
    );
  }
  const state = requireStack(opts.stack);
  if (!opts.yes) {
    throw new UserError(
      `reset deletes every database of stack '${opts.stack}' (down, purge), builds it anew and seeds it; its passwords and ports change. Nothing was changed. To do exactly that, add --yes.`,
    );
  }
  const replicas = state.replicas ?? state.ports.replicas.length;
  log(`resetting stack ${opts.stack}: down, purge, up with ${replicas} replica(s), seed`);
  await down({ stack: opts.stack, purge: true, yes: true, log });
  const { outputs } = await up({ stack: opts.stack, replicas, log });
  const report = await seed({ stack: opts.stack, scale: opts.scale ?? 1, seed: opts.seed ?? 1, progressTo: opts.progressTo });
  return { outputs, replicas, seededRows: Object.values(report.rows).reduce((a, b) => a + b, 0) };
}
