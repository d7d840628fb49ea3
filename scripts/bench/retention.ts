// Retention: what partitioning buys. Removing one day of metrics the way partition maintenance does
// (R040: DETACH PARTITION, then DROP TABLE) against removing the same rows from the unpartitioned
// copy with a B-tree on ts (DELETE, then the VACUUM that makes their space reusable). Each round
// removes another day of the window benchmark's data, the last days first, so it runs after the
// window and BRIN figures, which read every day.
import { FLAT_TABLE, benchDay, windowData } from "./metricsData";
import { withOwner } from "./db";
import { alternate, ratios, roundLabel, spread, timed } from "./runner";
import { Benchmark, BenchContext, Figure } from "./types";

const GOAL = 100;

export const retention: Benchmark = {
  id: "retention",
  title: "retention: dropping a day of metrics",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const data = await windowData(ctx);
    if (data.days < ctx.rounds) throw new Error(`retention needs a day of bench metrics per round: ${data.days} days for ${ctx.rounds} rounds`);
    const perDay = Math.round(data.rows / data.days);
    // As nb_owner, as maintenance runs: it owns metrics, its partitions and the bench copy.
    return withOwner(ctx.outputs.connections.migrator, async (c) => {
      const dayOf = (round: number) => data.days - 1 - round;
      const partitionOf = (round: number) => data.partitions[dayOf(round)];
      const deleteMs: number[] = [];
      const vacuumMs: number[] = [];
      const detachMs: number[] = [];
      const sides = await alternate(ctx.rounds, {
        subject: async (round) => {
          ctx.note(`retention ${roundLabel(round, ctx.rounds)}: DETACH and DROP ${partitionOf(round)}`);
          // In one transaction, as run_partition_maintenance() does both.
          return timed(async () => {
            await c.query("BEGIN");
            detachMs.push(await timed(() => c.query(`ALTER TABLE neuralblitz.metrics DETACH PARTITION ${partitionOf(round)}`)));
            await c.query(`DROP TABLE ${partitionOf(round)}`);
            await c.query("COMMIT");
          });
        },
        baseline: async (round) => {
          ctx.note(`retention ${roundLabel(round, ctx.rounds)}: DELETE day ${dayOf(round) + 1} from ${FLAT_TABLE}, then VACUUM`);
          const del = await timed(() => c.query(`DELETE FROM ${FLAT_TABLE} WHERE ts >= $1 AND ts < $2`, [benchDay(dayOf(round)), benchDay(dayOf(round) + 1)]));
          const vac = await timed(() => c.query(`VACUUM ${FLAT_TABLE}`));
          deleteMs.push(del);
          vacuumMs.push(vac);
          return del + vac;
        },
      });
      const value = ratios(sides.baseline, sides.subject);
      return [
        {
          id: "retention.drop_day",
          title: `retention: dropping one day of metrics (${perDay.toLocaleString("en")} rows) by partition`,
          against: "DELETE of the same rows from an unpartitioned copy with a B-tree on ts, then its VACUUM",
          goal: `≥ ${GOAL}× faster`,
          value,
          unit: "× faster",
          met: value.median >= GOAL,
          method:
            `each round removes another day of the ${data.days}-day bench data (the last first) both ways, sides alternated, as nb_owner straight to the primary: ` +
            "ALTER TABLE metrics DETACH PARTITION and DROP TABLE in one transaction, as partition maintenance (run_partition_maintenance()) does, against DELETE of that day from the copy and VACUUM of the copy; wall time of the statements, synchronous_commit on.",
          details: { dropMs: spread(sides.subject), detachMs: spread(detachMs), deleteAndVacuumMs: spread(sides.baseline), deleteMs: spread(deleteMs), vacuumMs: spread(vacuumMs), rowsPerDay: perDay },
          evidence: [],
        },
      ];
    });
  },
};
