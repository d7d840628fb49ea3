// The local topology as the Pulumi program's `local` platform sees it: the same `nbdb up`, `down`
// and `status` (scripts/local/stack.ts) that run the local stack, called from the LocalTopology
// dynamic provider (infra/platform/local.ts) in the engine's provider process. One implementation of
// the primary, the replicas and the pooler; this file only maps it to a resource's inputs/outputs.
import { LoginRoleName } from "../../schema/roles";
import { down, status, up } from "../../scripts/local/stack";
import * as fs from "fs";
import { caFile, loadState, outputsOf } from "../../scripts/local/state";
import { Endpoint, PoolerEndpoint } from "./types";

export interface LocalTopologyInputs {
  /** The local stack's name (its directory under the stacks' home, its servers). */
  readonly stack: string;
  readonly replicas: number;
  /** The stacks' home (NBDB_HOME); empty for nbdb's default, so `nbdb --stack <stack>` finds it. */
  readonly home: string;
  /** Destroy stops the servers and keeps the directory (deletionProtection); otherwise it removes both. */
  readonly keepData: boolean;
}

export interface LocalTopologyOutputs extends LocalTopologyInputs {
  readonly primary: Endpoint;
  readonly replicaEndpoints: Endpoint[];
  readonly pooler: PoolerEndpoint;
  /** Secrets: the superuser's password, every login's, and the data key, as the local stack generated them. */
  readonly adminPassword: string;
  readonly passwords: Record<LoginRoleName, string>;
  readonly dataKey: string;
  /** The stack's CA (scripts/local/tls.ts): its file, which the connection URLs name, and its certificate. */
  readonly caFile: string;
  readonly caCert: string;
  /** Every node asked for and the pooler were running when last seen (refresh reads it again). */
  readonly running: boolean;
}

/** Runs `fn` with NBDB_HOME pointing at the stacks' home (none: nbdb's default), as `nbdb` would see it. */
export function inHome<T>(home: string | undefined, fn: () => T): T {
  const before = process.env.NBDB_HOME;
  const restore = () => {
    if (before === undefined) delete process.env.NBDB_HOME;
    else process.env.NBDB_HOME = before;
  };
  if (home) process.env.NBDB_HOME = home;
  try {
    const result = fn();
    if (result instanceof Promise) return result.finally(restore) as T;
    restore();
    return result;
  } catch (e) {
    restore();
    throw e;
  }
}

function outputsFor(inputs: LocalTopologyInputs): LocalTopologyOutputs {
  const state = loadState(inputs.stack);
  if (!state) throw new Error(`local stack '${inputs.stack}' has no state after up`);
  const out = outputsOf(state);
  const { postgres, ...logins } = state.passwords;
  return {
    ...inputs,
    primary: out.primary,
    replicaEndpoints: out.replicas,
    pooler: out.pooler,
    adminPassword: postgres,
    passwords: logins as Record<LoginRoleName, string>,
    dataKey: state.dataKey,
    caFile: caFile(inputs.stack),
    caCert: fs.readFileSync(caFile(inputs.stack), "utf8"),
    running: true,
  };
}

/** Create or converge: the replica count changes only the tail; the primary is never restarted for it. */
export async function applyTopology(inputs: LocalTopologyInputs): Promise<LocalTopologyOutputs> {
  return inHome(inputs.home, async () => {
    await up({ stack: inputs.stack, replicas: inputs.replicas, bundles: false });
    return outputsFor(inputs);
  });
}

export async function removeTopology(inputs: LocalTopologyInputs): Promise<void> {
  await inHome(inputs.home, async () => {
    if (!loadState(inputs.stack)) return;
    await down({ stack: inputs.stack, purge: !inputs.keepData, yes: !inputs.keepData });
  });
}

/** What runs now, for refresh: undefined when the stack is gone (so the next up creates it again). */
export async function readTopology(inputs: LocalTopologyInputs): Promise<LocalTopologyOutputs | undefined> {
  return inHome(inputs.home, async () => {
    if (!loadState(inputs.stack)) return undefined;
    const s = await status(inputs.stack);
    const out = outputsFor(inputs);
    // A stopped node is drift: the next up starts it again (and `nbdb up` would do the same).
    return { ...out, running: s.nodes.every((n) => n.running) && s.pooler.running };
  });
}
