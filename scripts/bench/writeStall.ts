// The application's worst write stall while routine operations run (issue 16): `nbdb maintain`
// creating partitions, and a migration that needs a lock the application holds. Writers commit one
// row at a time on their own connections; the figure is the longest any single commit took while
// the operation ran, with a session holding a long read of the table meanwhile (as an auditor's
// report would). Absolute figures in ms (goal: 1 s at most); the tests assert the same bound.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { applyBundles } from "../../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../../infra/bundles/catalog";
import { maintain } from "../ops/maintain";
import { sleep } from "../local/system";
import { withClient } from "./db";
import { benchDay, createBenchPartition } from "./metricsData";
import { spread } from "./runner";
import { BenchContext, Benchmark, Figure, sized } from "./types";

export const STALL_GOAL_MS = 1000;

export interface WriterLoad {
  /** Stop the writers; the longest a single commit waited, how many committed, and (keyed) which ids and how many client errors. */
  stop(): Promise<{ worstMs: number; commits: number; acked: string[]; errors: number; keptConnection: number }>;
  /** Commits so far, while they run. */
  commits(): number;
  /** From now on, a commit on a writer's first connection counts it in `keptConnection` (e.g. a role change returned). */
  mark(): void;
  /** The last client error (keyed), for messages. */
  lastError(): string;
}

export interface WriterOptions {
  /**
   * Each insert gets a unique id as $1, recorded once its commit is acknowledged; a client error is
   * counted and the writer reconnects instead of failing the load (for operations that may drop connections).
   */
  readonly keyed?: boolean;
}

/** `n` writers each committing `insert` in a loop on a connection of its own. */
export function startWriters(url: string, insert: string, n = 4, opts: WriterOptions = {}): WriterLoad {
  let stopped = false;
  let worstMs = 0;
  let commits = 0;
  let errors = 0;
  let lastError = "none";
  let after = false;
  const kept = new Set<number>();
  const acked: string[] = [];
  const run = Math.random().toString(36).slice(2, 8);
  const done = Promise.all(
    Array.from({ length: n }, async (_, w) => {
      let seq = 0;
      let first = true;
      while (!stopped) {
        const c = new Client({ connectionString: url, application_name: "nbdb-writer" });
        // A connection closed while idle is an error event, not a rejection: the next query reports it.
        if (opts.keyed) c.on("error", () => undefined);
        try {
          await c.connect();
          while (!stopped) {
            const id = `${run}-${w}-${seq++}`;
            const t = performance.now();
            await c.query(insert, opts.keyed ? [id] : undefined);
            worstMs = Math.max(worstMs, performance.now() - t);
            commits++;
            if (opts.keyed) acked.push(id);
            if (after && first) kept.add(w);
            await sleep(5);
          }
        } catch (e) {
          if (!opts.keyed) throw e;
          errors++;
          lastError = (e as Error).message;
          first = false;
          await sleep(100);
        } finally {
          await c.end().catch(() => undefined);
        }
      }
    }),
  );
  return {
    async stop() {
      stopped = true;
      await done;
      return { worstMs, commits, acked, errors, keptConnection: kept.size };
    },
    commits: () => commits,
    mark() {
      after = true;
    },
    lastError: () => lastError,
  };
}

export interface HeldRead {
  readonly pid: number;
  release(): Promise<void>;
}

/** A session that read `table` in a transaction it leaves open: it holds ACCESS SHARE until released. */
export async function holdRead(url: string, table: string, applicationName = "long-reader"): Promise<HeldRead> {
  const c = new Client({ connectionString: url, application_name: applicationName });
  await c.connect();
  await c.query("BEGIN");
  const [{ pid }] = (await c.query(`SELECT pg_backend_pid() AS pid, count(*) FROM ${table}`)).rows;
  return {
    pid,
    async release() {
      await c.query("COMMIT").catch(() => undefined);
      await c.end();
    },
  };
}

/** Worst commit wait of writers while `operation` runs, with a read of `table` held for `holdMs` at its start. */
export async function stallDuring(url: string, insert: string, table: string, holdMs: number, operation: () => Promise<unknown>): Promise<{ worstMs: number; commits: number }> {
  const writers = startWriters(url, insert);
  try {
    await sleep(200);
    const reader = await holdRead(url, table);
    const running = operation();
    await sleep(holdMs);
    await reader.release();
    await running;
    await sleep(200);
  } catch (e) {
    await writers.stop().catch(() => undefined);
    throw e;
  }
  return writers.stop();
}

/** Drop up to `n` of the newest premade metrics partitions that are empty, so maintain has some to create. */
async function dropPremade(adminUrl: string, n: number): Promise<number> {
  return withClient(adminUrl, async (c) => {
    const { rows } = await c.query(
      `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'neuralblitz.metrics'::regclass AND c.relname ~ '^metrics_p[0-9]{8}$'
          AND c.relname > 'metrics_p' || to_char(now() + interval '2 days', 'YYYYMMDD')
        ORDER BY 1 DESC LIMIT $1`,
      [n],
    );
    let dropped = 0;
    for (const r of rows) {
      const empty = (await c.query(`SELECT NOT EXISTS (SELECT 1 FROM neuralblitz.${r.relname}) AS empty`)).rows[0].empty;
      if (empty) {
        await c.query(`DROP TABLE neuralblitz.${r.relname}`);
        dropped++;
      }
    }
    return dropped;
  });
}

const STALL_DB = "nbdb_bench_stall";

export const writeStall: Benchmark = {
  id: "stall",
  title: "application write stall during maintain and a migration behind a lock",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const rounds = sized(ctx, { quick: 1, full: ctx.rounds });
    const holdMs = sized(ctx, { quick: 1500, full: 3000 });
    const admin = ctx.outputs.connections.admin;
    // Bench rows go to a bench partition (year 2100), never among real metrics.
    await withClient(admin, (c) => createBenchPartition(c, benchDay(400)).catch(() => undefined));
    const insert = `INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES ('${benchDay(400).toISOString()}', 'bench.stall', 1, 'nbdb-bench')`;
    const maintainMs: number[] = [];
    const migrationMs: number[] = [];
    let created = 0;
    for (let round = 0; round < rounds; round++) {
      ctx.note(`maintain creating partitions behind a ${holdMs} ms read, round ${round + 1}/${rounds}`);
      const dropped = await dropPremade(admin, 2);
      const m = await stallDuring(admin, insert, "neuralblitz.metrics", holdMs, async () => (created += (await maintain(ctx.outputs.connections.migrator)).partitionsCreated));
      if (dropped === 0) ctx.note("no premade partition was free to drop: maintain had none to create this round");
      maintainMs.push(m.worstMs);

      ctx.note(`a migration behind a ${holdMs} ms read, round ${round + 1}/${rounds}`);
      // A throw-away database: the bench's migration never enters the stack's own ledger.
      await withClient(admin, async (c) => {
        await c.query(`DROP DATABASE IF EXISTS ${STALL_DB} WITH (FORCE)`);
        await c.query(`CREATE DATABASE ${STALL_DB} OWNER nb_owner`);
      });
      const dbAdmin = new URL(admin);
      dbAdmin.pathname = `/${STALL_DB}`;
      await withClient(dbAdmin.toString(), (c) =>
        c.query("CREATE SCHEMA neuralblitz AUTHORIZATION nb_owner; CREATE TABLE neuralblitz.stall_probe (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int); ALTER TABLE neuralblitz.stall_probe OWNER TO nb_owner"),
      );
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-bench-stall-"));
      try {
        fs.mkdirSync(path.join(dir, "migrations"));
        fs.mkdirSync(path.join(dir, "repeatable"));
        fs.copyFileSync(path.join(REPO_BUNDLE_DIR, "migrations", "V001__bundle_ledger.sql"), path.join(dir, "migrations", "V001__bundle_ledger.sql"));
        fs.writeFileSync(path.join(dir, "migrations", "V002__stall_probe_note.sql"), "-- Bench: a column on a table the application holds.\nALTER TABLE neuralblitz.stall_probe ADD COLUMN note text;\n");
        const migrator = new URL(ctx.outputs.connections.migrator);
        migrator.pathname = `/${STALL_DB}`;
        const catalog = loadCatalog(dir);
        // The ledger first, so the figure is about the ALTER alone.
        await applyBundles({ url: migrator.toString() }, catalog.filter((b) => b.name.startsWith("V001")));
        const g = await stallDuring(dbAdmin.toString(), "INSERT INTO neuralblitz.stall_probe (v) VALUES (1)", "neuralblitz.stall_probe", holdMs, () =>
          applyBundles({ url: migrator.toString() }, catalog),
        );
        migrationMs.push(g.worstMs);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
        await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${STALL_DB} WITH (FORCE)`));
      }
    }
    const figure = (id: string, title: string, samples: number[], method: string): Figure => {
      const value = spread(samples);
      return {
        id,
        title,
        against: `the goal: no commit of the application waits longer than ${STALL_GOAL_MS} ms`,
        goal: `≤ ${STALL_GOAL_MS} ms`,
        value,
        unit: "ms (worst single commit)",
        met: value.max <= STALL_GOAL_MS,
        method,
        details: { holdMs, rounds },
        evidence: [],
      };
    };
    return [
      figure(
        "stall.maintain",
        "worst application write stall during nbdb maintain creating partitions",
        maintainMs,
        `4 writers commit single-row inserts into metrics; a session holds a read of metrics open for ${holdMs} ms while nbdb maintain creates the premade partitions dropped before it (${created} created in all). Each creation runs in its own transaction with lock_timeout 200 ms and is retried, so writers never queue behind it for long.`,
      ),
      figure(
        "stall.migration",
        "worst application write stall during a migration behind an application's lock",
        migrationMs,
        `4 writers commit single-row inserts into a table; a session holds a read of it open for ${holdMs} ms while a migration adds a column (ALTER TABLE needs ACCESS EXCLUSIVE). The applier tries with lock_timeout 200 ms and backs off between tries, up to the deploy's limit.`,
      ),
    ];
  },
};
