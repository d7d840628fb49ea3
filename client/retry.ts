// Retrying a transaction that lost a race: SQLSTATE 40001 (serialization_failure: a SERIALIZABLE or
// REPEATABLE READ conflict, or change_neuron_state() finding the neuron changed since the version
// read) and 40P01 (deadlock_detected). Only the whole transaction can be retried, so wrap the call
// of withUser, never a statement inside it.

/** The SQLSTATEs after which running the whole transaction again can succeed. */
export const RETRYABLE_SQLSTATES: readonly string[] = ["40001", "40P01"];

export interface RetryOptions {
  /** Attempts in all, the first included (default 5). */
  readonly attempts?: number;
  /** Delay before the first retry, doubled each time, with full jitter (default 20 ms). */
  readonly baseDelayMs?: number;
  /** Longest delay between attempts (default 1,000 ms). */
  readonly maxDelayMs?: number;
  /** Told about each retry (attempt number starting at 1, the error). */
  readonly onRetry?: (attempt: number, error: Error) => void;
}

export function isRetryable(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && RETRYABLE_SQLSTATES.includes(code);
}

/**
 * Run `transaction` (a function that runs one whole transaction, e.g. `() => db.withUser(id, fn)`),
 * again when it fails with a retryable SQLSTATE, up to `attempts` times; any other error, or the
 * last attempt's, is thrown as it is. The function must read what it decides on inside the
 * transaction (e.g. the neuron's current version), so a new attempt decides on fresh data.
 */
export async function withRetry<T>(transaction: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 5;
  if (!Number.isInteger(attempts) || attempts < 1) throw new Error(`withRetry: attempts must be a whole number of at least 1, got ${attempts}`);
  const base = opts.baseDelayMs ?? 20;
  const max = opts.maxDelayMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction(attempt);
    } catch (e) {
      if (attempt >= attempts || !isRetryable(e)) throw e;
      opts.onRetry?.(attempt, e as Error);
      const delay = Math.random() * Math.min(max, base * 2 ** (attempt - 1));
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
