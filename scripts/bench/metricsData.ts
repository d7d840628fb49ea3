// Bench rows in the real `metrics` table live in partitions of their own (metrics_bench_pYYYYMMDD)
// in 2100, a range no real row reaches and that partition maintenance neither creates ahead nor
// retires, so they never mix with a user's metrics and leave with a DROP. Each window-query side
// holds the same rows: the partitioned, indexed `metrics`, and an unpartitioned copy with a B-tree on ts.
import { Client } from "pg";
import { BENCH_SCHEMA } from "./fixtures";
import { withOwner } from "./db";
import { BenchContext, sized } from "./types";

const DAY_MS = 86_400_000;
const BENCH_EPOCH_MS = Date.UTC(2100, 0, 1);
const PARTITION_PREFIX = "metrics_bench_p";
export const FLAT_TABLE = `${BENCH_SCHEMA}.metrics_flat`;
/** Distinct metric names and label values: a few series per name, as a fleet of hosts reports them. */
const METRIC_NAMES = 50;
const HOSTS = 20;

export function benchDay(index: number): Date {
  return new Date(BENCH_EPOCH_MS + index * DAY_MS);
}

function partitionName(day: Date): string {
  return PARTITION_PREFIX + day.toISOString().slice(0, 10).replace(/-/g, "");
}

/** SQL producing the bench rows numbered first..last, spread evenly in time from `start` at `stepMs` apart. */
export function benchRowsSql(first: number, last: number, start: Date, stepMs: number): string {
  return `SELECT g::bigint AS id, timestamptz '${start.toISOString()}' + (g - ${first}) * interval '${stepMs} milliseconds' AS ts,
                 'bench.metric_' || (g % ${METRIC_NAMES}) AS name, random() AS value,
                 jsonb_build_object('host', 'h' || (g % ${HOSTS})) AS labels, 'nbdb-bench' AS source
            FROM generate_series(${first}, ${last}) AS g`;
}

/** A row in the text COPY format for (ts, name, value, labels, source): what an ingesting client sends. */
export function benchRowText(i: number, ts: Date): string {
  return `${ts.toISOString()}\tbench.metric_${i % METRIC_NAMES}\t${Math.random()}\t{"host": "h${i % HOSTS}"}\tnbdb-bench\n`;
}

/** An empty bench partition of metrics for one day, with every index of the parent. */
export async function createBenchPartition(c: Client, day: Date): Promise<string> {
  const name = partitionName(day);
  await c.query(
    `CREATE TABLE neuralblitz.${name} PARTITION OF neuralblitz.metrics FOR VALUES FROM ('${day.toISOString()}') TO ('${new Date(day.getTime() + DAY_MS).toISOString()}')`,
  );
  return `neuralblitz.${name}`;
}

export interface WindowData {
  readonly rows: number;
  readonly days: number;
  readonly partitions: string[];
}

export function windowDataSize(ctx: BenchContext): { rows: number; days: number } {
  // A day holds 333,334 rows (the retention figure's day); ten days keep the load under a minute or two
  // on two shared cores (thirty took seven minutes there) while every figure still reads whole days.
  return sized(ctx, { quick: { rows: 100_000, days: 2 }, full: { rows: 3_333_340, days: 10 } });
}

/**
 * Loads the window-query rows once per run. Each day is filled as a plain table and then attached,
 * so the parent's indexes are built in bulk (4x faster here than maintaining them row by row);
 * the CHECK constraint spares ATTACH its validation scan.
 */
async function loadWindowData(ctx: BenchContext): Promise<WindowData> {
  const { rows, days } = windowDataSize(ctx);
  const perDay = Math.ceil(rows / days);
  const stepMs = DAY_MS / perDay;
  const partitions: string[] = [];
  // As nb_owner: loading the project's metrics runs its triggers, never as the superuser.
  await withOwner(ctx.outputs.connections.migrator, async (c) => {
    await c.query("SET maintenance_work_mem = '256MB'");
    for (let d = 0; d < days; d++) {
      const day = benchDay(d);
      const next = new Date(day.getTime() + DAY_MS);
      const table = `neuralblitz.${partitionName(day)}`;
      ctx.note(`loading metrics day ${d + 1}/${days} (${perDay} rows)`);
      await c.query(
        `CREATE TABLE ${table} (LIKE neuralblitz.metrics INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
           CHECK (ts >= '${day.toISOString()}' AND ts < '${next.toISOString()}'))`,
      );
      await c.query(`INSERT INTO ${table} (id, ts, name, value, labels, source) ${benchRowsSql(d * perDay + 1, (d + 1) * perDay, day, stepMs)}`);
      await c.query(`ALTER TABLE neuralblitz.metrics ATTACH PARTITION ${table} FOR VALUES FROM ('${day.toISOString()}') TO ('${next.toISOString()}')`);
      partitions.push(table);
    }
    ctx.note(`copying ${perDay * days} rows into the unpartitioned baseline and indexing its ts`);
    await c.query(`CREATE TABLE ${FLAT_TABLE} AS SELECT * FROM neuralblitz.metrics WHERE ts >= $1 AND ts < $2`, [benchDay(0), benchDay(days)]);
    await c.query(`CREATE INDEX metrics_flat_ts ON ${FLAT_TABLE} (ts)`);
    ctx.note("vacuuming and analyzing both sides");
    // Both sides vacuumed: hint bits set and visibility maps complete, so neither pays for them in a timed query.
    for (const table of [...partitions, FLAT_TABLE]) await c.query(`VACUUM (ANALYZE) ${table}`);
  });
  return { rows: perDay * days, days, partitions };
}

/** Drops every bench partition (attached or left unattached by an interrupted load). */
export async function dropBenchPartitions(c: Client): Promise<void> {
  const res = await c.query(
    `SELECT c.relname FROM pg_catalog.pg_class c
      WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind = 'r' AND c.relname LIKE '${PARTITION_PREFIX.replace(/_/g, "\\_")}%'`,
  );
  for (const r of res.rows) await c.query(`DROP TABLE neuralblitz.${r.relname}`);
}

const loaded = new WeakMap<BenchContext, Promise<WindowData>>();

/** The window-query rows, loaded by whichever benchmark needs them first. */
export function windowData(ctx: BenchContext): Promise<WindowData> {
  if (!loaded.has(ctx)) loaded.set(ctx, loadWindowData(ctx));
  return loaded.get(ctx)!;
}
