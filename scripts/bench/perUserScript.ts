// The per-user read the application does through the pooler (client withUser): name the user for
// the transaction, read that user's neurons.
import { benchUserIdSql } from "./fixtures";

export const PER_USER_SELECT = "SELECT id, label, amplitude FROM";

/**
 * One pgbench transaction for a random bench user; `from` is the table and any explicit predicate.
 * `context: false` leaves out naming the user (set_user_context), for a table without RLS.
 */
export function perUserScript(users: number, from: (userId: string) => string, opts: { context?: boolean } = {}): string {
  const userId = benchUserIdSql(":u");
  return [
    `\\set u random(1, ${users})`,
    "BEGIN;",
    ...(opts.context === false ? [] : [`SELECT neuralblitz.set_user_context((${userId})::uuid);`]),
    `${PER_USER_SELECT} ${from(userId)};`,
    "END;",
    "",
  ].join("\n");
}
