// What every benchmark produces and what it is given: a figure is one row of BENCHMARKS.md.
import { LocalStackOutputs } from "../local/state";

/** Median and range of per-round values (a ratio per alternation, or an absolute figure per round). */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** First and third quartiles (linear interpolation): the middle half of the rounds. */
  readonly q1: number;
  readonly q3: number;
  readonly samples: number[];
}

export interface Figure {
  /** Stable key, so runs can be compared (e.g. "ingest.copy"). */
  readonly id: string;
  readonly title: string;
  /** The baseline the figure is measured against (or what it is measured over, for absolute figures). */
  readonly against: string;
  readonly goal: string;
  /** The headline number: `unit` says whether it is a ratio or an absolute figure. */
  readonly value: Spread;
  readonly unit: string;
  /** null where the figure has no goal of its own (reported beside one that has). */
  readonly met: boolean | null;
  /** How it was measured, in a sentence or two. */
  readonly method: string;
  /** The raw measurements behind `value` (rows/s, tps, ms, bytes ...). */
  readonly details: Readonly<Record<string, Spread | number | string>>;
  /** What the run observed that explains the figure: plans, wait events, limits. */
  readonly evidence: string[];
}

export interface BenchContext {
  readonly stack: string;
  /** Small sizes (seconds in all) for the smoke test; otherwise the sizes BENCHMARKS.md needs. */
  readonly quick: boolean;
  /** Alternations per figure. */
  readonly rounds: number;
  readonly outputs: LocalStackOutputs;
  /** The stack's data key (the bench users' encrypted columns need it). */
  readonly dataKey: string;
  /** Directory of pgbench and the other PostgreSQL client programs. */
  readonly pgBinDir: string;
  /** A detail line for the progress display (what is running now). */
  readonly note: (line: string) => void;
}

/** Thrown by a benchmark that must not run on this stack (it would change data it does not own): reported, not a failure. */
export class BenchmarkSkipped extends Error {}

export interface Benchmark {
  readonly id: string;
  readonly title: string;
  run(ctx: BenchContext): Promise<Figure[]>;
}

/** Pick the size for this run. */
export function sized<T>(ctx: BenchContext, sizes: { quick: T; full: T }): T {
  return ctx.quick ? sizes.quick : sizes.full;
}
