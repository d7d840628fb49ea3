// What the bench adds to a stack and takes away again: the `nbdb_bench` schema (the baselines:
// unpartitioned, unindexed, unaudited or RLS-free copies) and bench-owned users with neurons in
// the real tables, recognisable by their fixed uuid prefixes. The audit trail keeps the entries
// these rows cause: it is append-only by design, so those entries stay and say what the bench did.
import { Client } from "pg";
import { BenchContext, sized } from "./types";
import { withClient, withOwner } from "./db";

export const BENCH_SCHEMA = "nbdb_bench";
/** pooler.efficiency's direct login: a member of nb_app, which pg_hba.conf admits over TCP and TLS (nb_app it does not). */
export const DIRECT_ROLE = "nbdb_bench_direct";
const USER_PREFIX = "b0000000-0000-4000-8000-";
const NEURON_PREFIX = "b1000000-0000-4000-8000-";
const BENCH_HASH = "$argon2id$v=19$m=65536,t=3,p=4$bmJkYi1iZW5jaA$bmJkYi1iZW5jaA";
/** Audited rows per transaction when creating fixtures: every audited change rewrites the chain's head row. */
const FIXTURE_BATCH = 500;

export interface BenchUsers {
  readonly users: number;
  readonly neuronsPerUser: number;
}

export function benchUsers(ctx: BenchContext): BenchUsers {
  return sized(ctx, { quick: { users: 10, neuronsPerUser: 10 }, full: { users: 100, neuronsPerUser: 50 } });
}

/** SQL for bench user n's uuid, n being a SQL expression (pgbench variables included). */
export function benchUserIdSql(n: string): string {
  return `('${USER_PREFIX}' || lpad((${n})::text, 12, '0'))::uuid`;
}

export function benchNeuronIdSql(n: string): string {
  return `('${NEURON_PREFIX}' || lpad((${n})::text, 12, '0'))::uuid`;
}

/** Row-level security stops applying to the owner for the calling transaction only (as nbdb seed does). */
const RLS_TABLES = ["users", "quantum_neurons", "quantum_neuron_history"];

export async function withoutForcedRls(c: Client, fn: () => Promise<void>): Promise<void> {
  await c.query("BEGIN");
  try {
    for (const t of RLS_TABLES) await c.query(`ALTER TABLE neuralblitz.${t} NO FORCE ROW LEVEL SECURITY`);
    await fn();
    for (const t of RLS_TABLES) await c.query(`ALTER TABLE neuralblitz.${t} FORCE ROW LEVEL SECURITY`);
    await c.query("COMMIT");
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

async function deleteBenchUsers(c: Client): Promise<void> {
  // ON DELETE CASCADE takes their neurons and neuron history with them.
  await withoutForcedRls(c, async () => {
    await c.query(`DELETE FROM neuralblitz.users WHERE id BETWEEN $1 AND $2`, [`${USER_PREFIX}000000000000`, `${USER_PREFIX}ffffffffffff`]);
  });
}

/** A new bench schema and the bench users with their neurons. */
export async function createFixtures(ctx: BenchContext): Promise<BenchUsers> {
  const size = benchUsers(ctx);
  // As nb_owner (nb_migrator), never the superuser: these writes run the schema's triggers.
  await withOwner(ctx.outputs.connections.migrator, async (c) => {
    await c.query(`CREATE SCHEMA ${BENCH_SCHEMA}`);
    await withoutForcedRls(c, async () => {
      await c.query("SELECT neuralblitz.set_user_context(NULL, $1)", [ctx.dataKey]);
      await c.query(
        `INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash, status)
         SELECT ${benchUserIdSql("g")}, 'nbdb-bench-' || g, neuralblitz.encrypt_secret('bench-' || g || '@nbdb-bench.invalid'),
                neuralblitz.lookup_hash('bench-' || g || '@nbdb-bench.invalid'), $2, 'active'
           FROM generate_series(1, $1::int) AS g`,
        [size.users, BENCH_HASH],
      );
    });
    const neurons = size.users * size.neuronsPerUser;
    for (let first = 1; first <= neurons; first += FIXTURE_BATCH) {
      await withoutForcedRls(c, async () => {
        await c.query(
          `INSERT INTO neuralblitz.quantum_neurons (id, user_id, label, amplitude)
           SELECT ${benchNeuronIdSql("g")}, ${benchUserIdSql(`1 + (g - 1) % ${size.users}`)}, 'bench-' || g, random()
             FROM generate_series($1::int, $2::int) AS g`,
          [first, Math.min(neurons, first + FIXTURE_BATCH - 1)],
        );
      });
    }
    await c.query("ANALYZE neuralblitz.users, neuralblitz.quantum_neurons");
  });
  return size;
}

export async function removeFixtures(ctx: BenchContext): Promise<void> {
  // Dropping the bench schema runs no code of the schema's; the superuser may hold bench tables in it.
  await withClient(ctx.outputs.connections.admin, (c) => c.query(`DROP SCHEMA IF EXISTS ${BENCH_SCHEMA} CASCADE; DROP ROLE IF EXISTS ${DIRECT_ROLE}`));
  await withOwner(ctx.outputs.connections.migrator, deleteBenchUsers);
}
