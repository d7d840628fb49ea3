// The measurement discipline every figure follows: the two sides run alternately in one run (the
// order swapped every round, so drift on a shared two-core machine hits both alike), optionally
// after one untimed warm-up of each side (caches, plans, pooled connections), and the figure is the
// median with min, max and quartiles of the per-round ratios, never a ratio of two averages. A
// figure whose middle half of rounds spans more than WIDE_SPREAD of its median is flagged "wide".
import { Spread } from "./types";

export function spread(samples: number[]): Spread {
  if (samples.length === 0 || samples.some((s) => !Number.isFinite(s))) {
    throw new Error(`cannot summarise samples [${samples.join(", ")}]: every round must give a finite number`);
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], q1: quantile(sorted, 0.25), q3: quantile(sorted, 0.75), samples };
}

/** Quantile `p` (0-1) of sorted samples, linearly interpolated between the nearest ranks. */
function quantile(sorted: readonly number[], p: number): number {
  const at = (sorted.length - 1) * p;
  const low = Math.floor(at);
  const high = Math.min(sorted.length - 1, low + 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (at - low);
}

/** The interquartile range relative to the median, above which a figure is reported as wide. */
export const WIDE_SPREAD = 0.1;

/** The interquartile range as a share of the median (0 for a single round). */
export function relativeSpread(s: Spread): number {
  return s.median === 0 ? 0 : (s.q3 - s.q1) / Math.abs(s.median);
}

export function isWide(s: Spread): boolean {
  return relativeSpread(s) > WIDE_SPREAD;
}

/** The value below which `p` (0-1) of the samples fall (nearest rank). */
export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

export interface Sides<T> {
  /** The thing the figure is about (partitioned table, audited update, pooler ...). */
  readonly subject: (round: number) => Promise<T>;
  /** What it is measured against. */
  readonly baseline: (round: number) => Promise<T>;
}

export interface Alternation<T> {
  readonly subject: T[];
  readonly baseline: T[];
}

export interface AlternateOptions {
  /** Run each side once, untimed, before the rounds (round -1): warm caches, plans and pooled connections. */
  readonly warmup?: boolean;
}

export async function alternate<T = number>(rounds: number, sides: Sides<T>, opts: AlternateOptions = {}): Promise<Alternation<T>> {
  const result: Alternation<T> = { subject: [], baseline: [] };
  if (opts.warmup) {
    await sides.subject(-1);
    await sides.baseline(-1);
  }
  for (let round = 0; round < rounds; round++) {
    const order: (keyof Sides<T>)[] = round % 2 === 0 ? ["subject", "baseline"] : ["baseline", "subject"];
    for (const side of order) result[side].push(await sides[side](round));
  }
  return result;
}

/** "warm-up" or "round 3/5", for progress notes. */
export function roundLabel(round: number, rounds: number): string {
  return round < 0 ? "warm-up" : `round ${round + 1}/${rounds}`;
}

/** Per-round ratio `top[i] / bottom[i]`. */
export function ratios(top: readonly number[], bottom: readonly number[]): Spread {
  return spread(top.map((t, i) => t / bottom[i]));
}

/** Milliseconds `fn` takes. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Run `work` while calling `probe` every `intervalMs`; the samples taken until it finished. */
export async function sampling<T, S>(intervalMs: number, probe: () => Promise<S>, work: () => Promise<T>): Promise<{ result: T; samples: S[] }> {
  const samples: S[] = [];
  let running = true;
  const sampler = (async () => {
    while (running) {
      samples.push(await probe());
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  try {
    return { result: await work(), samples };
  } finally {
    running = false;
    await sampler;
  }
}
