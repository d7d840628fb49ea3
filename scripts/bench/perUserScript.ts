// The per-user read the application does through the pooler (client withUser): name the user for
// the transaction, read that user's neurons.
import { benchUserIdSql } from "./fixtures";

export const PER_USER_SELECT = "SELECT id, label, amplitude FROM";

export const SET_USER_CONTEXT = "SELECT neuralblitz.set_user_context";

/**
 * One pgbench transaction for a random bench user; `from` is the table and any explicit predicate.
 * `context: false` leaves out naming the user (set_user_context), for a table without RLS.
 * `begin`: how BEGIN and set_user_context go out. "separate" (the default): a round trip each;
 * "pipeline": one round trip, as client withUser sends them (client/beginAsUser.ts), for -M
 * extended or prepared; "compound": one round trip as one simple-protocol message (`\;`), for a
 * pool that may run out of server connections, where pgbench's pipeline mode waits for one client's
 * results with its whole thread and stalls the clients that hold the others.
 */
export function perUserScript(users: number, from: (userId: string) => string, opts: { context?: boolean; begin?: "separate" | "pipeline" | "compound" } = {}): string {
  const userId = benchUserIdSql(":u");
  const context = opts.context === false ? [] : [`${SET_USER_CONTEXT}((${userId})::uuid);`];
  const begin =
    context.length === 0 || !opts.begin || opts.begin === "separate"
      ? ["BEGIN;", ...context]
      : opts.begin === "pipeline"
        ? ["\\startpipeline", "BEGIN;", ...context, "\\endpipeline"]
        : [`BEGIN \\; ${context[0]}`];
  return [`\\set u random(1, ${users})`, ...begin, `${PER_USER_SELECT} ${from(userId)};`, "END;", ""].join("\n");
}
