// The measurement discipline every figure follows: the two sides run alternately in one run (the
// order swapped every round, so drift on a shared two-core machine hits both alike) and the figure
// is the median with min and max of the per-round ratios, never a ratio of two averages.
import { Spread } from "./types";

export function spread(samples: number[]): Spread {
  if (samples.length === 0 || samples.some((s) => !Number.isFinite(s))) {
    throw new Error(`cannot summarise samples [${samples.join(", ")}]: every round must give a finite number`);
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], samples };
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

export async function alternate<T = number>(rounds: number, sides: Sides<T>): Promise<Alternation<T>> {
  const result: Alternation<T> = { subject: [], baseline: [] };
  for (let round = 0; round < rounds; round++) {
    const order: (keyof Sides<T>)[] = round % 2 === 0 ? ["subject", "baseline"] : ["baseline", "subject"];
    for (const side of order) result[side].push(await sides[side](round));
  }
  return result;
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
