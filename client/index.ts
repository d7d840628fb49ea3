// The application's side of the database: a write pool on the pooler and read pools over the
// replicas, built from a stack's outputs, and `withUser`, which runs a function in a transaction
// with the user and the data key set transaction-locally. Under PgBouncer's transaction pooling
// that is the only safe way to carry them (a session SET would leak to the next client), and
// `withUser` makes it the easy way. PgBouncer 1.24 pools protocol-level prepared statements, so
// queries may be named (`{ name, text, values }`). `listen` keeps a session of its own on the
// pooler's session-mode entry (LISTEN cannot work through transaction pooling). docs/application.md
// is the application's guide.
import { Client, Pool, PoolClient, PoolConfig } from "pg";
import { beginAsUser } from "./beginAsUser";
import { StackOutputs, sessionPoolDatabase } from "./outputs";

export type { StackOutputs } from "./outputs";
export { bulkInsert, BULK_CHUNK_ROWS } from "./bulk";
export { RETRYABLE_SQLSTATES, isRetryable, withRetry } from "./retry";
export type { RetryOptions } from "./retry";

export interface Listener {
  /** Stop listening and close the session. */
  close(): Promise<void>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface NeuralBlitzDbOptions {
  readonly outputs: StackOutputs;
  /** The stack's data key for the encrypted columns (the local stack keeps it in state.json). */
  readonly dataKey: string;
  /** Connections per pool (default 10). */
  readonly max?: number;
  /** Told about idle connections the server dropped (default: ignored; the pool replaces them). */
  readonly onIdleError?: (e: Error) => void;
}

export interface UserTransactionOptions {
  /** Run on a replica, in a READ ONLY transaction, as nb_readonly. */
  readonly readOnly?: boolean;
}

function poolFor(url: string, max: number, onIdleError: (e: Error) => void): Pool {
  const pool = new Pool({ connectionString: url, max, application_name: "neuralblitz-app" } satisfies PoolConfig);
  // An idle connection dropped by the server (a pooler restart, a failover) is removed by the pool;
  // unhandled, the event would end the process.
  pool.on("error", onIdleError);
  return pool;
}

/**
 * nb_readonly straight to the primary: the readonly URL (the pooler's read-only entry) pointed at the
 * primary's endpoint and database, verified against the servers' CA where the stack names one apart.
 */
function primaryReadUrl(outputs: StackOutputs): string {
  const u = new URL(outputs.connections.readonly);
  u.hostname = outputs.primary.host;
  u.port = String(outputs.primary.port);
  u.pathname = `/${outputs.database}`;
  const serverCa = outputs.tls?.serverCaFile ?? outputs.tls?.caFile;
  if (serverCa && u.searchParams.has("sslrootcert")) u.searchParams.set("sslrootcert", serverCa);
  return u.toString();
}

export class NeuralBlitzDb {
  /** nb_app through the pooler: reads and writes of the user's rows. */
  readonly write: Pool;
  /** nb_readonly through the pooler's read-only entry, which spreads it over the replicas (the primary when there is none). */
  readonly read: readonly Pool[];
  private readonly dataKey: string;
  /** nb_readonly straight to the primary, for reads when the replicas cannot serve (none when there are no replicas). */
  private readonly readFallback?: Pool;
  private readonly appUrl: string;
  private readonly onIdleError: (e: Error) => void;
  private nextRead = 0;

  constructor(opts: NeuralBlitzDbOptions) {
    if (!opts.dataKey || opts.dataKey.length < 32) {
      throw new Error(
        "NeuralBlitzDb needs the stack's data key (at least 32 characters): readDataKey(stack) for a local stack (state.json), " +
          "`pulumi stack output dataKey --show-secrets` for a deployed one",
      );
    }
    const max = opts.max ?? 10;
    const onIdleError = opts.onIdleError ?? (() => undefined);
    this.dataKey = opts.dataKey;
    this.appUrl = opts.outputs.connections.app;
    this.onIdleError = onIdleError;
    this.write = poolFor(opts.outputs.connections.app, max, onIdleError);
    this.read = [poolFor(opts.outputs.connections.readonly, max, onIdleError)];
    if (opts.outputs.replicas.length) this.readFallback = poolFor(primaryReadUrl(opts.outputs), max, onIdleError);
  }

  /**
   * Run `fn` in one transaction as user `userId`: row-level security shows and accepts only that
   * user's rows, and the encryption helpers find the data key. Commits when `fn` resolves, rolls
   * back when it throws. Nothing outlives the transaction on the pooled connection.
   */
  async withUser<T>(userId: string, fn: (tx: PoolClient) => Promise<T>, opts: UserTransactionOptions = {}): Promise<T> {
    if (!UUID.test(userId)) throw new Error(`withUser: '${userId}' is not a uuid`);
    // Bound to this transaction (R060): nothing a session-level SET leaves on a pooled connection
    // counts. BEGIN and the context go in one round trip (client/beginAsUser.ts).
    const client = opts.readOnly ? await this.readTransaction(userId) : await this.write.connect();
    let broken: Error | undefined;
    try {
      if (!opts.readOnly) await beginAsUser(client, "BEGIN", userId, this.dataKey);
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (e) {
      await client.query("ROLLBACK").catch((rollbackError: Error) => (broken = rollbackError));
      throw e;
    } finally {
      client.release(broken);
    }
  }

  /**
   * A connection in a READ ONLY transaction: through the pooler's read-only entry (the replicas in
   * turn); when that cannot be reached or fails to begin (a replica died: PgBouncer 1.24 does not
   * skip a dead host of its list; nothing has run yet), the primary is the last resort.
   */
  private async readTransaction(userId: string): Promise<PoolClient> {
    const start = this.nextRead++;
    const order = [...this.read.map((_, i) => this.read[(start + i) % this.read.length]), ...(this.readFallback ? [this.readFallback] : [])];
    let last: unknown;
    for (const pool of order) {
      let client: PoolClient | undefined;
      try {
        client = await pool.connect();
        await beginAsUser(client, "BEGIN READ ONLY", userId, this.dataKey);
        return client;
      } catch (e) {
        client?.release(e as Error);
        last = e;
      }
    }
    throw last;
  }

  /**
   * LISTEN on `channel` in a session of its own (nb_app on the pooler's session-mode entry), calling
   * `onNotification` with each payload; `onError` hears about a lost session (listen again).
   * Notifications are not under row-level security: any nb_app session may listen on any channel,
   * so send ids, and read the rows they name with withUser.
   */
  async listen(channel: string, onNotification: (payload: string) => void, onError: (e: Error) => void = this.onIdleError): Promise<Listener> {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`listen: '${channel}' is not a channel name (lower-case letters, digits and _, at most 63)`);
    const u = new URL(this.appUrl);
    u.pathname = `/${sessionPoolDatabase(u.pathname.slice(1))}`;
    const client = new Client({ connectionString: u.toString(), application_name: "neuralblitz-listen" });
    client.on("error", onError);
    client.on("notification", (n) => {
      if (n.channel === channel) onNotification(n.payload ?? "");
    });
    await client.connect();
    try {
      await client.query(`LISTEN ${channel}`);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    return { close: () => client.end() };
  }

  async close(): Promise<void> {
    await Promise.all([this.write.end(), ...this.read.map((p) => p.end()), ...(this.readFallback ? [this.readFallback.end()] : [])]);
  }
}
