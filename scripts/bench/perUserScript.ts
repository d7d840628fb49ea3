// The per-user read the application does through the pooler (client withUser): name the user for
// the transaction, read that user's neurons.
import { benchUserIdSql } from "./fixtures";

export const PER_USER_SELECT = "SELECT id, label, amplitude FROM";

export const SET_USER_CONTEXT = "SELECT neuralblitz.set_user_context";

/**
 * One pgbench transaction for a random bench user; `from` is the table and any explicit predicate.
 * `context: false` leaves out naming the user (set_user_context), for a table without RLS.
 * `pipelined`: BEGIN and set_user_context in one round trip, as client withUser sends them
 * (client/beginAsUser.ts); pgbench pipelines only with -M extended or prepared.
 */
export function perUserScript(users: number, from: (userId: string) => string, opts: { context?: boolean; pipelined?: boolean } = {}): string {
  const userId = benchUserIdSql(":u");
  const context = opts.context === false ? [] : [`${SET_USER_CONTEXT}((${userId})::uuid);`];
  const begin = opts.pipelined && context.length > 0 ? ["\\startpipeline", "BEGIN;", ...context, "\\endpipeline"] : ["BEGIN;", ...context];
  return [`\\set u random(1, ${users})`, ...begin, `${PER_USER_SELECT} ${from(userId)};`, "END;", ""].join("\n");
}
