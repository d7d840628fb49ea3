// One-off connections and transactions of the nbdb commands: connect, run, always end the client;
// BEGIN, run, COMMIT, or ROLLBACK on any error. Every command uses these instead of writing them out.
import { Client, ClientBase, ClientConfig } from "pg";

/** Connects to `target` (a URL, or a config for a login not in the outputs), runs `fn`, always ends the client. */
export async function withClient<T>(target: string | ClientConfig, fn: (c: Client) => Promise<T>, applicationName = "nbdb"): Promise<T> {
  const config = typeof target === "string" ? { connectionString: target } : target;
  const client = new Client({ ...config, application_name: applicationName });
  // A refused login leaves nothing open either.
  await client.connect().catch(async (e) => {
    await client.end().catch(() => undefined);
    throw e;
  });
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface TransactionOptions {
  /** What follows BEGIN, e.g. "READ ONLY" or "ISOLATION LEVEL REPEATABLE READ READ ONLY". */
  readonly mode?: string;
  /** Roll back even when `fn` succeeds: a check that writes only what must not stay (temporary tables). */
  readonly rollback?: boolean;
}

/** Runs `fn` in one transaction on `client`: COMMIT when it returns, ROLLBACK when it throws (the error is rethrown). */
export async function withTransaction<C extends ClientBase, T>(client: C, fn: (c: C) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
  await client.query(opts.mode ? `BEGIN ${opts.mode}` : "BEGIN");
  let result: T;
  try {
    result = await fn(client);
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
  await client.query(opts.rollback ? "ROLLBACK" : "COMMIT");
  return result;
}
