// `nbdb bench`: brings up (or reuses) a local stack, runs every benchmark on it with bench-only
// tables and bench-owned rows, removes them again, and writes the report.
import * as os from "os";
import * as fs from "fs";
import * as path from "path";
import { findBinaries, run } from "../local/system";
import { UserError } from "../errors";
import { up } from "../local/stack";
import { loadState, readDataKey, stackDir } from "../local/state";
import { auditUpdate } from "./auditUpdate";
import { auditVerify } from "./auditVerify";
import { backupThroughput } from "./backupThroughput";
import { brinSize } from "./brinSize";
import { withClient, withOwner } from "./db";
import { createFixtures, removeFixtures } from "./fixtures";
import { ingest } from "./ingest";
import { manyClients } from "./manyClients";
import { dropBenchPartitions } from "./metricsData";
import { noopUp } from "./noopUp";
import { benchProgress } from "./progress";
import { replicaLag } from "./replicaLag";
import { retention } from "./retention";
import { seedThroughput } from "./seedThroughput";
import { switchoverDowntime } from "./switchover";
import { BenchRun, writeReport } from "./report";
import { pooledSession } from "./pooledSession";
import { rlsSelect } from "./rlsSelect";
import { BenchContext, Benchmark, BenchmarkSkipped, Figure } from "./types";
import { windowQuery } from "./window";
import { writeStall } from "./writeStall";

export const BENCHMARKS: readonly Benchmark[] = [ingest, windowQuery, brinSize, retention, auditUpdate, rlsSelect, pooledSession, manyClients, replicaLag, auditVerify, seedThroughput, noopUp, writeStall, backupThroughput, switchoverDowntime];
// switchoverDowntime last: it exchanges the primary's and the replica's data (the stack stays consistent, its ports unchanged).
/** The dedicated stack, so a bench never touches the data of a user's `local` stack. */
export const BENCH_STACK = "bench";
const FULL_ROUNDS = 5;
const QUICK_ROUNDS = 2;
const BENCH_REPLICAS = 1;

export interface BenchOptions {
  readonly stack: string;
  readonly quick?: boolean;
  /** Benchmark ids to run (default: all). */
  readonly only?: readonly string[];
  /** Markdown report path (default: BENCHMARKS.md for a full run, .nbdb/<stack>/bench-quick.md for a quick one). */
  readonly report?: string;
}

export function defaultReport(stack: string, quick: boolean): string {
  return quick ? path.join(stackDir(stack), "bench-quick.md") : path.resolve("BENCHMARKS.md");
}

function selected(only?: readonly string[]): readonly Benchmark[] {
  if (!only) return BENCHMARKS;
  const unknown = only.filter((id) => !BENCHMARKS.some((b) => b.id === id));
  if (unknown.length) throw new UserError(`unknown benchmark ${unknown.join(", ")}; choose from: ${BENCHMARKS.map((b) => b.id).join(", ")}`);
  return BENCHMARKS.filter((b) => only.includes(b.id));
}

async function versions(adminUrl: string, pgbouncer: string): Promise<{ postgres: string; pgbouncer: string }> {
  const postgres = await withClient(adminUrl, async (c) => (await c.query("SELECT version() AS v")).rows[0].v as string);
  const bouncer = (await run(pgbouncer, ["--version"])).stdout.split("\n")[0];
  return { postgres: postgres.replace(/ on .*$/, ""), pgbouncer: bouncer };
}

export async function runBench(opts: BenchOptions): Promise<{ run: BenchRun; files: { markdown: string; json: string } }> {
  const quick = !!opts.quick;
  const benchmarks = selected(opts.only);
  const startedAt = new Date();
  const progress = benchProgress(benchmarks.length + 1);
  progress.step(`bringing up stack ${opts.stack}`);
  const { outputs } = await up({ stack: opts.stack, replicas: loadState(opts.stack) ? undefined : BENCH_REPLICAS, log: progress.note });
  const bins = findBinaries();
  const ctx: BenchContext = {
    stack: opts.stack,
    quick,
    rounds: quick ? QUICK_ROUNDS : FULL_ROUNDS,
    outputs,
    dataKey: readDataKey(opts.stack),
    pgBinDir: bins.pgBinDir,
    note: progress.note,
  };
  // Also before: an interrupted run may have left its tables behind.
  const removeBenchData = async () => {
    await withOwner(outputs.connections.migrator, dropBenchPartitions);
    await removeFixtures(ctx);
  };
  const figures: Figure[] = [];
  const failures: { benchmark: string; error: string }[] = [];
  const skipped: { benchmark: string; reason: string }[] = [];
  const benchmarkSeconds: Record<string, number> = {};
  try {
    progress.note("creating bench users and neurons");
    await removeBenchData();
    await createFixtures(ctx);
    for (const b of benchmarks) {
      progress.step(b.title);
      const started = Date.now();
      try {
        figures.push(...(await b.run(ctx)));
        benchmarkSeconds[b.id] = (Date.now() - started) / 1000;
      } catch (e) {
        if (e instanceof BenchmarkSkipped) {
          skipped.push({ benchmark: b.id, reason: e.message });
          progress.note(`skipped: ${e.message}`);
        } else {
          failures.push({ benchmark: b.id, error: (e as Error).message });
          progress.note(`FAILED: ${(e as Error).message}`);
        }
      }
    }
  } finally {
    progress.note("removing bench tables, partitions and users");
    await removeBenchData();
    progress.finish();
  }
  const cpus = os.cpus();
  const result: BenchRun = {
    mode: quick ? "quick" : "full",
    stack: opts.stack,
    startedAt: startedAt.toISOString(),
    durationSeconds: (Date.now() - startedAt.getTime()) / 1000,
    rounds: ctx.rounds,
    machine: { cpus: cpus.length, cpuModel: cpus[0]?.model.trim() ?? "unknown", memoryGiB: os.totalmem() / 1024 ** 3, os: `${os.type()} ${os.release()}` },
    ...(await versions(outputs.connections.admin, bins.pgbouncer)),
    figures,
    failures,
    skipped,
    benchmarkSeconds,
  };
  const report = opts.report ?? defaultReport(opts.stack, quick);
  fs.mkdirSync(path.dirname(report), { recursive: true });
  return { run: result, files: writeReport(result, report) };
}
