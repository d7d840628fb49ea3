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
      const commitMs: number[] = [];
      const dropWalBytes: number[] = [];
      const deleteWalBytes: number[] = [];
      // WAL written by a side: what the replicas replay and the backups archive (untimed reads).
      const walLsn = async () => (await c.query<{ lsn: string }>("SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn")).rows[0].lsn;
      const walSince = async (from: string) =>
        Number((await c.query<{ n: string }>("SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), $1)::bigint::text AS n", [from])).rows[0].n);
      const sides = await alternate(ctx.rounds, {
        subject: async (round) => {
          ctx.note(`retention ${roundLabel(round, ctx.rounds)}: DETACH and DROP ${partitionOf(round)}`);
          const from = await walLsn();
          // In one transaction, as run_partition_maintenance() does both.
          const ms = await timed(async () => {
            await c.query("BEGIN");
            detachMs.push(await timed(() => c.query(`ALTER TABLE neuralblitz.metrics DETACH PARTITION ${partitionOf(round)}`)));
            await c.query(`DROP TABLE ${partitionOf(round)}`);
            // The files are removed at commit.
            commitMs.push(await timed(() => c.query("COMMIT")));
          });
          dropWalBytes.push(await walSince(from));
          return ms;
        },
        baseline: async (round) => {
          ctx.note(`retention ${roundLabel(round, ctx.rounds)}: DELETE day ${dayOf(round) + 1} from ${FLAT_TABLE}, then VACUUM`);
          const from = await walLsn();
          const del = await timed(() => c.query(`DELETE FROM ${FLAT_TABLE} WHERE ts >= $1 AND ts < $2`, [benchDay(dayOf(round)), benchDay(dayOf(round) + 1)]));
          const vac = await timed(() => c.query(`VACUUM ${FLAT_TABLE}`));
          deleteWalBytes.push(await walSince(from));
          deleteMs.push(del);
          vacuumMs.push(vac);
          return del + vac;
        },
      });
      const value = ratios(sides.baseline, sides.subject);
      const figures: Figure[] = [
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
            "ALTER TABLE metrics DETACH PARTITION and DROP TABLE in one transaction, as partition maintenance (run_partition_maintenance()) does, against DELETE of that day from the copy and VACUUM of the copy; wall time of the statements, synchronous_commit on; the WAL each side writes read from pg_current_wal_insert_lsn() around it (untimed).",
          details: {
            dropMs: spread(sides.subject),
            detachMs: spread(detachMs),
            commitMs: spread(commitMs),
            deleteAndVacuumMs: spread(sides.baseline),
            deleteMs: spread(deleteMs),
            vacuumMs: spread(vacuumMs),
            rowsPerDay: perDay,
          },
          evidence: [
            `of the drop's time, ${spread(commitMs).median.toFixed(1)} ms (median) is its COMMIT, where PostgreSQL removes the partition's files: the file system's work of freeing them, which no statement of the drop can shorten`,
          ],
        },
        {
          id: "retention.drop_day_wal",
          title: `retention: WAL written removing one day of metrics (${perDay.toLocaleString("en")} rows) by partition`,
          against: "the WAL of the DELETE and VACUUM of the same rows from the unpartitioned copy (what every replica replays and every backup archives)",
          goal: "reported",
          value: ratios(deleteWalBytes, dropWalBytes),
          unit: "× less WAL",
          met: null,
          method: "the rounds of retention.drop_day: pg_wal_lsn_diff of pg_current_wal_insert_lsn() read before and after each side (untimed), per-round ratio.",
          details: { dropWalBytes: spread(dropWalBytes), deleteAndVacuumWalBytes: spread(deleteWalBytes) },
          evidence: [],
        },
      ];
      return figures;
    });
  },
};
