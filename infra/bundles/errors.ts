// Errors of the bundle engine. Each message names the bundle file and says what to do next; a SQL
// error also carries the line and column within the file and PostgreSQL's own fields.
import { lineAndColumn } from "./sqlSplit";

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BundleError";
  }
}

/** The fields of a PostgreSQL error as node-postgres exposes them. */
export interface PgErrorFields {
  readonly message: string;
  readonly code?: string;
  readonly position?: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly where?: string;
}

export function isPgError(e: unknown): e is PgErrorFields & Error {
  const code = (e as { code?: unknown } | undefined)?.code;
  return e instanceof Error && typeof code === "string" && /^[0-9A-Z]{5}$/.test(code);
}

// SQLSTATEs whose cure is not in the SQL text itself.
const NEXT_STEP: Record<string, string> = {
  "25001": "This statement cannot run in a transaction: move it to a bundle whose header declares '-- nbdb:no-transaction'.",
  "55P03": "Another session holds a lock the bundle needs (lock_timeout expired). Find it in pg_stat_activity, let it finish, and run again.",
  "42501": "The bundle runs as nb_owner: it may only touch what nb_owner owns or was granted.",
};

/**
 * A SQL error inside a bundle, located in the file: `offset` is where the text PostgreSQL saw
 * starts in the file, `index` (when PostgreSQL gave no position) where the failing statement starts.
 */
export function sqlErrorInBundle(
  bundle: { file: string; sql: string; transactional: boolean },
  err: PgErrorFields,
  location: { index: number; exact: boolean },
): BundleError {
  const { line, column } = lineAndColumn(bundle.sql, location.index);
  const lines = [`${bundle.file}:${line}:${column}: ${location.exact ? "" : "in the statement starting here: "}${err.message}${err.code ? ` (SQLSTATE ${err.code})` : ""}`];
  if (err.detail) lines.push(`  detail: ${err.detail}`);
  if (err.hint) lines.push(`  hint: ${err.hint}`);
  if (err.where) lines.push(`  where: ${err.where}`);
  if (err.code && NEXT_STEP[err.code]) lines.push(NEXT_STEP[err.code]);
  lines.push(
    bundle.transactional
      ? "The bundle was rolled back as a whole and the ledger is unchanged: fix the file and run again."
      : "The bundle ran outside a transaction: the statements before this one stay applied and the ledger is unchanged, so the whole bundle runs again next time; fix the file (its statements must be safe to repeat) and run again.",
  );
  return new BundleError(lines.join("\n"));
}
