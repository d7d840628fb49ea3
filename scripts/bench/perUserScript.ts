// The per-user read the application does through the pooler (client withUser): name the user for
// the transaction, read that user's neurons.
import { benchUserIdSql } from "./fixtures";

export const PER_USER_SELECT = "SELECT id, label, amplitude FROM";

/** One pgbench transaction for a random bench user; `from` is the table and any explicit predicate. */
export function perUserScript(users: number, from: (userId: string) => string): string {
  const userId = benchUserIdSql(":u");
  return [
    `\\set u random(1, ${users})`,
    "BEGIN;",
    `SELECT neuralblitz.set_user_context((${userId})::uuid);`,
    `${PER_USER_SELECT} ${from(userId)};`,
    "END;",
    "",
  ].join("\n");
}
