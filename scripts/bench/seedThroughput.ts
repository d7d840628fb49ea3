// Seed throughput: `nbdb seed` (generation in the client, COPY and batched INSERT into the real,
// indexed, audited tables, the audit trail's entries, RLS switched off for the owner per
// transaction, business tables and metrics on two connections at once, ANALYZE of every table) against COPY of exactly the rows it loaded into unindexed copies of those tables
// (no constraint, trigger or audit), both in rows/s. The seed is deterministic (--seed 1, the day
// fixed), so every round loads the same rows; the bench removes them again afterwards, and it
// refuses to run on a stack that holds seed data it did not put there (it would replace it).
import * as fs from "fs";
import { Readable } from "stream";
import { pipeline } from "stream/promises";
import { Client } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { USER_DATA_TABLES } from "../../schema/tables";
import { seed, seedMarkerFile } from "../ops/seed";
import { BENCH_SCHEMA, withoutForcedRls } from "./fixtures";
import { withClient, withOwner } from "./db";
import { alternate, ratios, roundLabel, spread, timed } from "./runner";
import { Benchmark, BenchContext, BenchmarkSkipped, Figure, sized } from "./types";

const GOAL = 0.5;
/** A seed at scale 10 takes tens of seconds here: fewer rounds than the other figures keep the run within its time. */
const MAX_ROUNDS = 3;
const SEED_USERS = "SELECT id FROM neuralblitz.users WHERE username LIKE 'seed\\_%'";

/** Which rows of a table the seed loaded (its users, their rows, its alert rules, its metrics). */
function seedRows(table: string): string {
  if (table === "users") return `username LIKE 'seed\\_%'`;
  if (USER_DATA_TABLES.includes(table as (typeof USER_DATA_TABLES)[number])) return `user_id IN (${SEED_USERS})`;
  if (table === "monitoring_alerts") return "rule LIKE 'seed-%'";
  if (table === "metrics") return "source LIKE 'seed-%'";
  throw new Error(`the seed loads ${table}, which the seed benchmark does not know: add it to seedRows()`);
}

async function seedDataPresent(c: Client): Promise<boolean> {
  return (await c.query(`SELECT EXISTS (${SEED_USERS}) OR EXISTS (SELECT 1 FROM neuralblitz.metrics WHERE source LIKE 'seed-%') AS present`)).rows[0].present;
}

/** Removes what the seed loaded, as the seed itself replaces it (cascading from its users). */
async function removeSeedData(ctx: BenchContext): Promise<void> {
  await withOwner(ctx.outputs.connections.migrator, async (c) => {
    await withoutForcedRls(c, async () => {
      await c.query(`DELETE FROM neuralblitz.users WHERE username LIKE 'seed\\_%'`);
      await c.query(`DELETE FROM neuralblitz.monitoring_alerts WHERE rule LIKE 'seed-%'`);
    });
    await c.query(`DELETE FROM neuralblitz.metrics WHERE source LIKE 'seed-%'`);
  });
  fs.rmSync(seedMarkerFile(ctx.stack), { force: true });
}

/** The seeded rows of every table it loaded, in COPY text format (read as the superuser, past RLS). */
async function captureRows(c: Client, tables: string[]): Promise<Map<string, Buffer[]>> {
  const captured = new Map<string, Buffer[]>();
  for (const t of tables) {
    const chunks: Buffer[] = [];
    const stream = c.query(copyTo(`COPY (SELECT * FROM neuralblitz.${t} WHERE ${seedRows(t)}) TO STDOUT`));
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    captured.set(t, chunks);
  }
  return captured;
}

const countLines = (chunks: Buffer[]) => chunks.reduce((n, b) => n + b.filter((x) => x === 10).length, 0);

export const seedThroughput: Benchmark = {
  id: "seed",
  title: "seed throughput",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const scale = sized(ctx, { quick: 0.1, full: 10 });
    const admin = ctx.outputs.connections.admin;
    if (await withClient(admin, seedDataPresent)) {
      throw new BenchmarkSkipped(`stack ${ctx.stack} holds seed data (users seed_*, metrics seed-*): the seed benchmark would replace it, so it did not run; measure on a stack without seed data (--stack <a new name>), or remove it there first`);
    }
    const asOf = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate()));
    let seededRows = 0;
    let loaded: Record<string, number> = {};
    const runSeed = async (round: number) => {
      // Untimed: the previous round's rows go first, so every timed seed loads into the same state.
      await removeSeedData(ctx);
      ctx.note(`nbdb seed --scale ${scale} ${roundLabel(round, Math.min(ctx.rounds, MAX_ROUNDS))}`);
      const report = await seed({ stack: ctx.stack, scale, seed: 1, asOf, progressTo: null });
      loaded = report.rows;
      seededRows = Object.values(report.rows).reduce((a, b) => a + b, 0);
      return seededRows / (report.durationMs / 1000);
    };
    try {
      // The first seed (untimed) gives the rows the baseline copies; later ones replace them with the same.
      await runSeed(-1);
      const tables = Object.keys(loaded);
      return await withClient(admin, async (c) => {
        const rows = await captureRows(c, tables);
        for (const t of tables) await c.query(`CREATE TABLE ${BENCH_SCHEMA}.seed_${t} (LIKE neuralblitz.${t} INCLUDING DEFAULTS)`);
        const copiedRows = [...rows.values()].reduce((n, chunks) => n + countLines(chunks), 0);
        const rounds = Math.min(ctx.rounds, MAX_ROUNDS);
        const copyAll = async (round: number) => {
          ctx.note(`COPY of the seeded rows into unindexed copies, ${roundLabel(round, rounds)}`);
          for (const t of tables) await c.query(`TRUNCATE ${BENCH_SCHEMA}.seed_${t}`);
          const ms = await timed(async () => {
            for (const t of tables) await pipeline(Readable.from(rows.get(t)!), c.query(copyFrom(`COPY ${BENCH_SCHEMA}.seed_${t} FROM STDIN`)));
          });
          return copiedRows / (ms / 1000);
        };
        const sides = await alternate(rounds, { subject: runSeed, baseline: copyAll });
        const value = ratios(sides.subject, sides.baseline);
        return [
          {
            id: "seed.throughput",
            title: `seed throughput (nbdb seed --scale ${scale}, ${seededRows.toLocaleString("en")} rows)`,
            against: "COPY of the same rows into unindexed copies of the same tables (no constraint, trigger or audit)",
            goal: `≥ ${GOAL}`,
            value,
            unit: "× COPY rows/s",
            met: value.median >= GOAL,
            method:
              `seed() in process as nbdb seed runs it (--seed 1, the day fixed, as nb_migrator: client-side generation, COPY and INSERT into the indexed, audited tables under their triggers, business tables and metrics on two connections at once, then ANALYZE of every table) against COPY FROM STDIN of the rows it loaded, captured once, ` +
              `into unindexed copies (superuser, straight to the primary, TRUNCATEd untimed before each round), sides alternated over ${rounds} rounds after one untimed seed; the previous seed's rows are removed (untimed) before each seed.`,
            details: { seedRowsPerSecond: spread(sides.subject), copyRowsPerSecond: spread(sides.baseline), seededRows, copiedRows },
            evidence: [`rows per table: ${Object.entries(loaded).map(([t, n]) => `${t} ${n}`).join(", ")}`],
          },
        ];
      });
    } finally {
      await removeSeedData(ctx);
    }
  },
};
