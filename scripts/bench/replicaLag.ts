// Replica lag under sustained writes: pgbench inserts batches into a bench table on the primary
// as fast as it can while pg_stat_replication is sampled every 100 ms. replay_lag is the time from
// the primary flushing WAL to the replica having replayed it (NULL once it is idle and caught up: 0).
import { BENCH_SCHEMA } from "./fixtures";
import { withClient } from "./db";
import { pgbench } from "./pgbench";
import { percentile, sampling, spread } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const LOAD_TABLE = `${BENCH_SCHEMA}.replica_load`;
const ROWS_PER_TRANSACTION = 100;
const CLIENTS = 4;
const SCRIPT = `INSERT INTO ${LOAD_TABLE} (payload) SELECT repeat(md5(random()::text), 8) FROM generate_series(1, ${ROWS_PER_TRANSACTION});\n`;

interface LagSample {
  readonly seconds: number;
  readonly bytes: number;
}

export const replicaLag: Benchmark = {
  id: "lag",
  title: "replica lag under write load",
  async run(ctx: BenchContext): Promise<Figure[]> {
    if (ctx.outputs.replicas.length === 0) throw new Error(`stack '${ctx.stack}' has no replica; add one with: npx nbdb up --stack ${ctx.stack} --replicas 1`);
    const seconds = sized(ctx, { quick: 1, full: 6 });
    const url = ctx.outputs.connections.admin;
    const rounds = await withClient(url, async (monitor) => {
      await monitor.query(`CREATE TABLE ${LOAD_TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)`);
      const probe = async (): Promise<LagSample[]> =>
        (
          await monitor.query(
            `SELECT coalesce(EXTRACT(epoch FROM replay_lag), 0)::float8 AS seconds,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS bytes
               FROM pg_stat_replication`,
          )
        ).rows.map((r) => ({ seconds: Number(r.seconds), bytes: Number(r.bytes) }));
      const results = [];
      for (let round = 0; round < ctx.rounds; round++) {
        ctx.note(`write load with ${CLIENTS} clients, round ${round + 1}/${ctx.rounds}`);
        const { result, samples } = await sampling(100, probe, () => pgbench(ctx, { script: SCRIPT, url, clients: CLIENTS, seconds }));
        const lags = samples.flat();
        if (lags.length === 0) throw new Error("pg_stat_replication showed no replica during the write load: is the replica streaming? (npx nbdb status --stack " + ctx.stack + ")");
        results.push({
          p50: percentile(lags.map((l) => l.seconds), 0.5),
          p99: percentile(lags.map((l) => l.seconds), 0.99),
          maxBytes: Math.max(...lags.map((l) => l.bytes)),
          rowsPerSecond: result.tps * ROWS_PER_TRANSACTION,
        });
      }
      return results;
    });
    const value = spread(rounds.map((r) => r.p99));
    return [
      {
        id: "replica.lag",
        title: "replica lag under sustained write load (p99)",
        against: `replay lag of ${ctx.outputs.replicas.length} streaming replica(s), sampled every 100 ms`,
        goal: "p99 < 1 s",
        value,
        unit: "s (p99)",
        met: value.median < 1,
        method: `pgbench, ${CLIENTS} clients inserting ${ROWS_PER_TRANSACTION}-row batches (~270 bytes a row) into a bench table on the primary, unthrottled, ${seconds} s per round; pg_stat_replication.replay_lag sampled every 100 ms.`,
        details: {
          p50Seconds: spread(rounds.map((r) => r.p50)),
          p99Seconds: value,
          maxLagBytes: spread(rounds.map((r) => r.maxBytes)),
          insertedRowsPerSecond: spread(rounds.map((r) => r.rowsPerSecond)),
        },
        evidence: [],
      },
    ];
  },
};
