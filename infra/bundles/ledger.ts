// The ledger in the database: what has been applied (neuralblitz.bundle_ledger, one row per bundle)
// and every application (neuralblitz.bundle_ledger_history). The tables themselves are created by
// the first migration, sql/migrations/V001__bundle_ledger.sql; until it has run, nothing has.
import type { ClientBase } from "pg";
import type { Bundle, BundleKind } from "./catalog";

export interface LedgerEntry {
  readonly name: string;
  readonly kind: BundleKind;
  readonly checksum: string;
}

/** The applied bundles by name; empty when the ledger does not exist yet. */
export async function readLedger(client: ClientBase): Promise<Map<string, LedgerEntry>> {
  const exists = await client.query("SELECT pg_catalog.to_regclass('neuralblitz.bundle_ledger') IS NOT NULL AS exists");
  if (!exists.rows[0].exists) return new Map();
  const rows = await client.query<LedgerEntry>("SELECT name, kind, checksum FROM neuralblitz.bundle_ledger");
  return new Map(rows.rows.map((r) => [r.name, r]));
}

/** Record an application; in a transactional bundle, inside its transaction. */
export async function recordApplication(client: ClientBase, bundle: Bundle, durationMs: number, toolVersion: string): Promise<void> {
  await client.query(
    `WITH entry AS (
       INSERT INTO neuralblitz.bundle_ledger AS l (name, kind, checksum, applied_at, duration_ms, applied_by, tool_version)
       VALUES ($1, $2, $3, pg_catalog.clock_timestamp(), $4, session_user, $5)
       ON CONFLICT (name) DO UPDATE
         SET kind = excluded.kind, checksum = excluded.checksum, applied_at = excluded.applied_at,
             duration_ms = excluded.duration_ms, applied_by = excluded.applied_by, tool_version = excluded.tool_version
       RETURNING l.*)
     INSERT INTO neuralblitz.bundle_ledger_history (name, kind, checksum, applied_at, duration_ms, applied_by, tool_version)
     SELECT name, kind, checksum, applied_at, duration_ms, applied_by, tool_version FROM entry`,
    [bundle.name, bundle.kind, bundle.checksum, Math.round(durationMs), toolVersion],
  );
}
