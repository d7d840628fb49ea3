// Bulk writes of a user's rows under row-level security. COPY FROM is refused on a table with RLS
// ("COPY FROM not supported with row-level security"), and nb_app may not create temporary tables,
// so rows go as one jsonb parameter per chunk into one INSERT ... SELECT: each row passes the
// table's policy (WITH CHECK) like any INSERT, in the caller's transaction, through the pooler.
import { PoolClient } from "pg";
import { TableName, USER_DATA_TABLES } from "../schema/tables";

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/** Rows per statement: large enough to amortise the round trip, small enough for one parameter. */
export const BULK_CHUNK_ROWS = 5000;

/**
 * Insert `rows` (objects keyed by column name; values as node-postgres would send them, dates as
 * ISO strings) into a user-data table, inside the transaction `tx` of withUser. Returns the number
 * inserted. A row of another user fails the whole transaction (RLS), inserting nothing.
 */
export async function bulkInsert(tx: PoolClient, table: TableName, columns: readonly string[], rows: readonly Record<string, unknown>[]): Promise<number> {
  if (!USER_DATA_TABLES.includes(table)) throw new Error(`bulkInsert: '${table}' is not a user-data table (${USER_DATA_TABLES.join(", ")})`);
  if (columns.length === 0) throw new Error("bulkInsert: name at least one column");
  for (const c of columns) if (!IDENTIFIER.test(c)) throw new Error(`bulkInsert: '${c}' is not a column name (lower-case letters, digits and _)`);
  const list = columns.map((c) => `"${c}"`).join(", ");
  const sql = `INSERT INTO neuralblitz.${table} (${list}) SELECT ${list} FROM pg_catalog.jsonb_populate_recordset(NULL::neuralblitz.${table}, $1::jsonb)`;
  let inserted = 0;
  for (let i = 0; i < rows.length; i += BULK_CHUNK_ROWS) {
    const chunk = rows.slice(i, i + BULK_CHUNK_ROWS).map((r) => Object.fromEntries(columns.map((c) => [c, r[c] ?? null])));
    inserted += (await tx.query(sql, [JSON.stringify(chunk)])).rowCount ?? 0;
  }
  return inserted;
}
