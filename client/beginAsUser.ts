// The start of withUser's transaction in one round trip: BEGIN and set_user_context() written
// together and answered together (the extended protocol's own pipelining: two Parse/Bind/Execute
// and one Sync), instead of one round trip each. Through PgBouncer every round trip of a short
// transaction counts (BENCHMARKS.md, session.user_context). The user id and the data key stay bind
// parameters: in statement text they would show in pg_stat_activity to pg_monitor's members.
//
// node-postgres runs such a message sequence through its Submittable interface (what pg-cursor
// uses): the client hands it the connection, then each backend message of its turn, until the
// ReadyForQuery that ends it.
import { Connection, PoolClient, Submittable } from "pg";

const SET_USER_CONTEXT_SQL = "SELECT neuralblitz.set_user_context($1, $2)";

class BeginAsUser implements Submittable {
  constructor(
    private readonly begin: string,
    private readonly values: readonly [string, string | null],
    private readonly done: (e?: Error) => void,
  ) {}

  submit(connection: Connection): void {
    // One write: the messages are corked together, as node-postgres does for its own queries.
    const stream = (connection as unknown as { stream: { cork?: () => void; uncork?: () => void } }).stream;
    stream.cork?.();
    try {
      connection.parse({ name: "", text: this.begin, types: [] }, true);
      connection.bind({ values: [] }, true);
      connection.execute({ portal: "" }, true);
      connection.parse({ name: "", text: SET_USER_CONTEXT_SQL, types: [] }, true);
      connection.bind({ values: [...this.values] }, true);
      connection.execute({ portal: "" }, true);
      connection.sync();
    } finally {
      stream.uncork?.();
    }
  }

  // What the backend answers: CommandComplete twice and a DataRow (set_user_context's void), or an
  // ErrorResponse; then one ReadyForQuery. Only the error and the end matter.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}

  // An ErrorResponse is followed by its ReadyForQuery, a lost connection is not: answer at the
  // error; `done` answers only once, so the ReadyForQuery after an error changes nothing.
  handleError(e: Error): void {
    this.done(e);
  }

  handleReadyForQuery(): void {
    this.done();
  }
}

/**
 * `begin` ("BEGIN" or "BEGIN READ ONLY") and set_user_context(userId, dataKey) on `client`, in
 * one round trip. Rejects with the server's error when either fails (the transaction, if begun,
 * is then aborted: the caller rolls back as after any failed statement).
 */
export function beginAsUser(client: PoolClient, begin: string, userId: string, dataKey: string | null): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (e?: Error) => {
      if (settled) return;
      settled = true;
      if (e) reject(e);
      else resolve();
    };
    client.query(new BeginAsUser(begin, [userId, dataKey], done));
  });
}
