// The session-leak probe, shared by every pooled entry's test: a client leaves every kind of
// session-level state on its server connection, and later clients of the same entry must find none.
import { expect } from "chai";
import { Client } from "pg";
import { AUTH_USER } from "../infra/topology/pgbouncerAuth";
import { HOST, clientSsl, requireStack } from "../scripts/local/state";
import { waitFor } from "../scripts/local/system";

export interface SessionState {
  /** The server connection: backend pid on its node (cluster_name), so connections of several servers differ. */
  readonly connection: string;
  readonly user_id: string | null;
  readonly users: number;
  readonly search_path: string;
  readonly statement_timeout_ms: number;
  readonly read_only: string;
  readonly row_security: string;
  readonly prepared: number;
  readonly listening: number;
  readonly advisory: number;
}

/**
 * Leave session-level state on the client's server connection in one simple query (one transaction
 * on one server connection): a user and data key for the RLS context, search_path, a timeout, a
 * PREPARE, a LISTEN (not on a hot standby, which refuses it), an advisory lock, read-only and
 * row_security defaults. Returns the server connection it left them on.
 */
export async function leaveSessionState(c: Client, victim: string, dataKey: string, opts: { standby?: boolean } = {}): Promise<string> {
  // One simple query: under transaction pooling a second one could run on another server connection.
  const results = (await c.query(`
    SET nb.user_id = '${victim}';
    SELECT set_config('nb.data_key', '${dataKey}', false), set_config('nb.context_at', EXTRACT(epoch FROM now())::text, false);
    SET search_path = neuralblitz, public;
    SET statement_timeout = '1h';
    PREPARE leaked AS SELECT count(*) FROM neuralblitz.users;
    ${opts.standby ? "" : "LISTEN leaked_channel;"}
    SELECT pg_advisory_lock(4242);
    SET default_transaction_read_only = on;
    SET row_security = off;
    SELECT pg_backend_pid() || '@' || current_setting('cluster_name') AS connection;
  `)) as unknown as { rows: { connection?: string }[] }[];
  return results[results.length - 1].rows[0].connection!;
}

/** What a later client finds of its server connection's session state. */
export async function sessionStateOf(c: Client): Promise<SessionState> {
  return (
    await c.query(`
      SELECT pg_backend_pid() || '@' || current_setting('cluster_name') AS connection,
             neuralblitz.current_user_id() AS user_id,
             (SELECT count(*)::int FROM neuralblitz.users) AS users,
             current_setting('search_path') AS search_path,
             (EXTRACT(epoch FROM current_setting('statement_timeout')::interval) * 1000)::int AS statement_timeout_ms,
             current_setting('default_transaction_read_only') AS read_only,
             current_setting('row_security') AS row_security,
             (SELECT count(*)::int FROM pg_prepared_statements) AS prepared,
             (SELECT count(*)::int FROM pg_listening_channels()) AS listening,
             (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory') AS advisory`)
  ).rows[0] as SessionState;
}

/** Fails unless `s` holds nothing a previous client left: the role's own defaults, no user, no rows. */
export function expectCleanSession(s: SessionState, statementTimeoutMs: number, what: string): void {
  expect(s, what).to.deep.include({
    user_id: null,
    users: 0,
    search_path: '"$user", public',
    statement_timeout_ms: statementTimeoutMs,
    read_only: "off",
    row_security: "on",
    prepared: 0,
    listening: 0,
    advisory: 0,
  });
}

/**
 * Wait until the stack's pooler has no server connection of `database` in reset (SHOW POOLS
 * sv_tested): the connection a client just gave back is then the idle one handed out next (LIFO).
 */
export async function waitForPoolReset(stack: string, database: string): Promise<void> {
  const state = requireStack(stack);
  const c = new Client({ host: HOST, port: state.ports.pooler, user: AUTH_USER, password: state.passwords[AUTH_USER], database: "pgbouncer", ssl: clientSsl(stack) });
  await c.connect();
  try {
    await waitFor(`the pooler to reset the server connections of ${database}`, 30_000, async () =>
      (await c.query("SHOW POOLS")).rows.filter((r) => r.database === database).every((r) => Number(r.sv_tested) === 0 && Number(r.sv_active) === 0) ? true : undefined,
    );
  } finally {
    await c.end();
  }
}
