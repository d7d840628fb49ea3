// Single-row UPDATE tps on quantum_neurons with the GoldenDAG audit trigger, against the same
// table without it: a bench copy (same columns, constraints, indexes and the table's other
// triggers) rather than disabling the trigger on the real table, which would let a user's
// concurrent writes go unaudited. Wait events are sampled during the audited 8-client runs.
import { Client } from "pg";
import { BENCH_SCHEMA, benchNeuronIdSql, benchUserIdSql, benchUsers } from "./fixtures";
import { withClient } from "./db";
import { pgbench } from "./pgbench";
import { alternate, ratios, roundLabel, sampling, spread } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const AUDITED = "neuralblitz.quantum_neurons";
const UNAUDITED = `${BENCH_SCHEMA}.quantum_neurons`;
const APP_NAME = "nbdb-bench-update";
const GOAL_8_CLIENTS = 0.7;

async function createUnauditedCopy(c: Client): Promise<void> {
  await c.query(`CREATE TABLE ${UNAUDITED} (LIKE ${AUDITED} INCLUDING ALL)`);
  await c.query(`INSERT INTO ${UNAUDITED} SELECT * FROM ${AUDITED} WHERE user_id IN (SELECT id FROM neuralblitz.users WHERE username LIKE 'nbdb-bench-%')`);
  const triggers = await c.query(
    "SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal AND tgname <> 'golden_dag'",
    [AUDITED],
  );
  for (const t of triggers.rows) await c.query(String(t.def).replace(` ON ${AUDITED} `, ` ON ${UNAUDITED} `));
  // The same row-level security, so both sides differ by the audit trigger only.
  const policies = await c.query(
    "SELECT policyname, permissive, cmd, roles::text[] AS roles, qual, with_check FROM pg_policies WHERE schemaname = 'neuralblitz' AND tablename = 'quantum_neurons'",
  );
  await c.query(`ALTER TABLE ${UNAUDITED} ENABLE ROW LEVEL SECURITY`);
  for (const p of policies.rows) {
    await c.query(
      `CREATE POLICY ${p.policyname} ON ${UNAUDITED} AS ${p.permissive} FOR ${p.cmd} TO ${(p.roles as string[]).join(", ")}` +
        (p.qual ? ` USING (${p.qual})` : "") + (p.with_check ? ` WITH CHECK (${p.with_check})` : ""),
    );
  }
  await c.query(`GRANT USAGE ON SCHEMA ${BENCH_SCHEMA} TO nb_app`);
  await c.query(`GRANT SELECT, UPDATE ON ${UNAUDITED} TO nb_app`);
  await c.query(`VACUUM (ANALYZE) ${UNAUDITED}`);
}

/** As the application writes: its user named for the transaction, then the UPDATE, under row-level security. */
function updateScript(table: string, neurons: number, users: number, asyncCommit: boolean): string {
  return [
    `\\set n random(1, ${neurons})`,
    "BEGIN;",
    ...(asyncCommit ? ["SET LOCAL synchronous_commit = off;"] : []),
    `SELECT neuralblitz.set_user_context((${benchUserIdSql(`1 + (:n - 1) % ${users}`)})::uuid);`,
    `UPDATE ${table} SET amplitude = random() WHERE id = ${benchNeuronIdSql(":n")};`,
    "END;",
  ].join("\n") + "\n";
}

async function waitEvents(c: Client): Promise<string[]> {
  const res = await c.query(
    "SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU') AS w FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
    [APP_NAME],
  );
  return res.rows.map((r) => r.w);
}

function topWaits(samples: string[][]): string {
  const counts = new Map<string, number>();
  for (const w of samples.flat()) counts.set(w, (counts.get(w) ?? 0) + 1);
  const total = samples.flat().length || 1;
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([w, n]) => `${w} ${Math.round((100 * n) / total)}%`).join(", ");
}

export const auditUpdate: Benchmark = {
  id: "audit-update",
  title: "audited single-row UPDATE",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const seconds = sized(ctx, { quick: 1, full: 3 });
    const { users, neuronsPerUser } = benchUsers(ctx);
    const neurons = users * neuronsPerUser;
    const admin = ctx.outputs.connections.admin;
    await withClient(admin, createUnauditedCopy);
    // The updates run the table's triggers (nb_owner's code): as the application, never the superuser.
    const url = ctx.outputs.connections.app;
    const tps = (table: string, clients: number, asyncCommit = false) => async (round: number) => {
      ctx.note(`UPDATE ${table}, ${clients} clients, ${roundLabel(round, ctx.rounds)}`);
      return (await pgbench(ctx, { script: updateScript(table, neurons, users, asyncCommit), url, clients, seconds, env: { PGAPPNAME: APP_NAME } })).tps;
    };
    // The monitor reads pg_stat_activity and runs the sealer (nb_audit's code), no code of nb_owner's.
    return withClient(admin, async (monitor) => {
      const figures: Figure[] = [];
      for (const clients of [1, 8]) {
        const waits: string[][] = [];
        const audited = tps(AUDITED, clients);
        const sides = await alternate(
          ctx.rounds,
          {
            subject: async (r) => {
              const { result, samples } = await sampling(50, () => waitEvents(monitor), () => audited(r));
              if (r >= 0) waits.push(...samples);
              return result;
            },
            baseline: tps(UNAUDITED, clients),
          },
          { warmup: !ctx.quick },
        );
        const value = ratios(sides.subject, sides.baseline);
        // Appends take no lock; the sealer chains them afterwards. Its cost is measured here too:
        // how long chaining this figure's audited updates takes, per entry.
        const sealStarted = Date.now();
        const sealed = Number((await monitor.query("SELECT neuralblitz.seal_golden_dag(interval '0', interval '1 hour') AS n")).rows[0].n);
        const sealSeconds = (Date.now() - sealStarted) / 1000;
        const evidence = [
          `wait events of the audited clients (sampled every 50 ms): ${topWaits(waits)}`,
          `sealing the figure's ${sealed} audit entries into the chain afterwards took ${sealSeconds.toFixed(2)} s (${Math.round(sealed / Math.max(sealSeconds, 0.001))} entries/s, one sealer)`,
        ];
        if (clients === 8) {
          // Diagnostic: the same comparison without the commit's WAL flush.
          const asyncCommit = await alternate(1, { subject: tps(AUDITED, clients, true), baseline: tps(UNAUDITED, clients, true) });
          evidence.push(`diagnostic, both sides with synchronous_commit=off (one round): ${ratios(asyncCommit.subject, asyncCommit.baseline).median.toFixed(2)}× (${asyncCommit.subject[0].toFixed(0)} vs ${asyncCommit.baseline[0].toFixed(0)} tps)`);
        }
        figures.push({
          id: `audit_update.c${clients}`,
          title: `single-row UPDATE tps on quantum_neurons with the audit chain, ${clients} client${clients > 1 ? "s" : ""}`,
          against: "the same table (bench copy with the same indexes and other triggers) without the audit trigger",
          goal: clients === 8 ? `≥ ${GOAL_8_CLIENTS}` : "none at 1 client",
          value,
          unit: "× unaudited tps",
          met: clients === 8 ? value.median >= GOAL_8_CLIENTS : null,
          method: `pgbench custom script (UPDATE of a random one of ${neurons} bench neurons), ${clients} client(s), ${seconds} s per side per round after one untimed warm-up each, as nb_app through the pooler with its user set per transaction (both sides under the same row-level security), synchronous_commit on.`,
          details: { auditedTps: spread(sides.subject), unauditedTps: spread(sides.baseline) },
          evidence,
        });
      }
      return figures;
    });
  },
};
