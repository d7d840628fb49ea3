// Ingest: the same pre-generated rows sent by a client into the real partitioned, indexed
// `metrics` (a bench-day partition) and into an unpartitioned, unindexed heap with the same
// columns, by COPY and by batched INSERT. Each side starts empty every round (TRUNCATE, untimed).
import { Readable } from "stream";
import { pipeline } from "stream/promises";
import { Client } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { BENCH_SCHEMA } from "./fixtures";
import { benchDay, benchRowText, createBenchPartition } from "./metricsData";
import { withOwner } from "./db";
import { alternate, ratios, spread, timed } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const HEAP = `${BENCH_SCHEMA}.metrics_heap`;
const COLUMNS = "(ts, name, value, labels, source)";
const INSERT_BATCH = 1000;
/** Day of the bench range that ingest writes to (the window-query data uses the first days). */
const INGEST_DAY = 60;

interface Rows {
  readonly copyChunks: Buffer[];
  readonly insertBatches: unknown[][][];
}

function makeRows(copyRows: number, insertRows: number): Rows {
  const day = benchDay(INGEST_DAY).getTime();
  const stamp = (i: number, n: number) => new Date(day + Math.floor((i * 86_400_000) / n));
  const copyChunks: Buffer[] = [];
  for (let first = 0; first < copyRows; first += INSERT_BATCH) {
    let text = "";
    for (let i = first; i < Math.min(copyRows, first + INSERT_BATCH); i++) text += benchRowText(i, stamp(i, copyRows));
    copyChunks.push(Buffer.from(text));
  }
  const insertBatches: unknown[][][] = [];
  for (let first = 0; first < insertRows; first += INSERT_BATCH) {
    const columns: unknown[][] = [[], [], [], [], []];
    for (let i = first; i < Math.min(insertRows, first + INSERT_BATCH); i++) {
      benchRowText(i, stamp(i, insertRows)).slice(0, -1).split("\t").forEach((v, col) => columns[col].push(v));
    }
    insertBatches.push(columns);
  }
  return { copyChunks, insertBatches };
}

async function copyInto(c: Client, table: string, chunks: Buffer[]): Promise<void> {
  await pipeline(Readable.from(chunks), c.query(copyFrom(`COPY ${table} ${COLUMNS} FROM STDIN`)));
}

async function insertInto(c: Client, table: string, batches: unknown[][][]): Promise<void> {
  for (const columns of batches) {
    await c.query(`INSERT INTO ${table} ${COLUMNS} SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::float8[], $4::jsonb[], $5::text[])`, columns);
  }
}

export const ingest: Benchmark = {
  id: "ingest",
  title: "metrics ingest",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const size = sized(ctx, { quick: { copy: 5_000, insert: 5_000 }, full: { copy: 200_000, insert: 100_000 } });
    const rows = makeRows(size.copy, size.insert);
    // As nb_owner: rows into the project's metrics run its triggers, never as the superuser.
    return withOwner(ctx.outputs.connections.migrator, async (c) => {
      const partition = await createBenchPartition(c, benchDay(INGEST_DAY));
      await c.query(`CREATE TABLE ${HEAP} (LIKE neuralblitz.metrics INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)`);
      const indexes = (await c.query("SELECT string_agg(indexrelid::regclass::text, ', ') AS names FROM pg_index WHERE indrelid = $1::regclass", [partition])).rows[0].names;
      const method = async (label: string, load: (table: string) => Promise<void>, count: number) => {
        // The metrics side loads through the parent (routing included) into the emptied bench partition.
        const rowsPerSecond = async (table: string, emptied: string, round: number) => {
          ctx.note(`${label} round ${round + 1}/${ctx.rounds}: ${count} rows into ${table}`);
          await c.query(`TRUNCATE ${emptied}`);
          return count / ((await timed(() => load(table))) / 1000);
        };
        return alternate(ctx.rounds, { subject: (r) => rowsPerSecond("neuralblitz.metrics", partition, r), baseline: (r) => rowsPerSecond(HEAP, HEAP, r) });
      };
      const copy = await method("COPY", (t) => copyInto(c, t, rows.copyChunks), size.copy);
      const insert = await method("batched INSERT", (t) => insertInto(c, t, rows.insertBatches), size.insert);
      await c.query(`TRUNCATE ${partition}`);
      const figure = (id: string, how: string, count: number, sides: { subject: number[]; baseline: number[] }): Figure => {
        const value = ratios(sides.subject, sides.baseline);
        return {
          id,
          title: `metrics ingest rows/s, ${how}`,
          against: "the same rows into an unpartitioned heap table with the same columns and no index",
          goal: "≥ 0.5",
          value,
          unit: "× baseline rows/s",
          met: value.median >= 0.5,
          method: `${count} pre-generated rows per side per round, ${how}, from one client as nb_migrator acting as nb_owner, straight to the primary; each side TRUNCATEd (untimed) before its round.`,
          details: { metricsRowsPerSecond: spread(sides.subject), heapRowsPerSecond: spread(sides.baseline), rowsPerRound: count },
          evidence: [`indexes maintained on the metrics partition: ${indexes}`],
        };
      };
      return [
        figure("ingest.copy", "COPY FROM STDIN", size.copy, copy),
        figure("ingest.insert", `batched INSERT (${INSERT_BATCH} rows per statement, unnest of arrays)`, size.insert, insert),
      ];
    });
  },
};
