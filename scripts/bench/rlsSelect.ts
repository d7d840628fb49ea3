// Per-user SELECT latency under row-level security, through PgBouncer as nb_app: quantum_neurons
// with its FORCEd policy against a bench copy of the same rows and indexes with RLS off, where the
// query names the user itself. The figure is the SELECT statement's own latency (pgbench -r), with
// named prepared statements (pgbench -M prepared) as drivers send them by default: PgBouncer 1.24
// pools them, so the plan is made once per server connection, not at every execution.
import { BENCH_SCHEMA, benchUsers } from "./fixtures";
import { withClient } from "./db";
import { PgbenchResult, pgbench } from "./pgbench";
import { PER_USER_SELECT, perUserScript } from "./perUserScript";
import { alternate, ratios, spread } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const NO_RLS = `${BENCH_SCHEMA}.neurons_without_rls`;
const CLIENTS = 4;

function selectMs(r: PgbenchResult): number {
  const line = r.statementMs.find((s) => s.text.startsWith(PER_USER_SELECT));
  if (!line) throw new Error(`pgbench -r did not report the SELECT's latency:\n${r.output}`);
  return line.ms;
}

export const rlsSelect: Benchmark = {
  id: "rls",
  title: "per-user SELECT under RLS",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const seconds = sized(ctx, { quick: 1, full: 4 });
    const { users, neuronsPerUser } = benchUsers(ctx);
    await withClient(ctx.outputs.connections.admin, async (c) => {
      await c.query(`CREATE TABLE ${NO_RLS} (LIKE neuralblitz.quantum_neurons INCLUDING ALL)`);
      await c.query(`INSERT INTO ${NO_RLS} SELECT * FROM neuralblitz.quantum_neurons WHERE user_id IN (SELECT id FROM neuralblitz.users WHERE username LIKE 'nbdb-bench-%')`);
      await c.query(`VACUUM (ANALYZE) ${NO_RLS}`);
      await c.query(`GRANT USAGE ON SCHEMA ${BENCH_SCHEMA} TO nb_app`);
      await c.query(`GRANT SELECT ON ${NO_RLS} TO nb_app`);
    });
    const run = (script: string, label: string) => async (round: number) => {
      ctx.note(`per-user SELECT ${label}, round ${round + 1}/${ctx.rounds}`);
      return pgbench(ctx, { script, url: ctx.outputs.connections.app, clients: CLIENTS, seconds, protocol: "prepared" });
    };
    const results = await alternate(ctx.rounds, {
      subject: run(perUserScript(users, () => "neuralblitz.quantum_neurons"), "under RLS"),
      baseline: run(perUserScript(users, (id) => `${NO_RLS} WHERE user_id = ${id}`), "without RLS"),
    });
    const rlsMs = results.subject.map(selectMs);
    const plainMs = results.baseline.map(selectMs);
    const value = ratios(plainMs, rlsMs);
    return [
      {
        id: "rls.select",
        title: `per-user SELECT latency under RLS via the pooler (${neuronsPerUser} rows per user)`,
        against: "the same rows, indexes and query with RLS off (explicit user_id predicate)",
        goal: "≥ 0.9",
        value,
        unit: "× (RLS-off latency / RLS latency)",
        met: value.median >= 0.9,
        method: `pgbench -M prepared (named prepared statements, pooled by PgBouncer's max_prepared_statements) through PgBouncer as nb_app, ${CLIENTS} clients, ${seconds} s per side per round; each transaction names (set_user_context) a random one of ${users} bench users and reads that user's neurons; latency of the SELECT alone (pgbench -r).`,
        details: {
          rlsSelectMs: spread(rlsMs),
          plainSelectMs: spread(plainMs),
          rlsTransactionMs: spread(results.subject.map((r) => r.latencyMs)),
          plainTransactionMs: spread(results.baseline.map((r) => r.latencyMs)),
        },
        evidence: [],
      },
    ];
  },
};
