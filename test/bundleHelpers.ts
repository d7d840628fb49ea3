// Helpers for the bundle tests: bundle directories assembled from fixtures, and a fresh database
// per test on one shared server, so each test starts with no ledger.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { REPO_BUNDLE_DIR } from "../infra/bundles/catalog";
import { LocalStackOutputs } from "../scripts/local/state";
import { query } from "./helpers";

export const FIXTURES = path.join(__dirname, "fixtures", "bundles");

/** The same URL, on another database. */
export function onDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A new database laid out as the local stack's (schema neuralblitz owned by nb_owner); returns its nb_migrator URL. */
export async function freshDatabase(outputs: LocalStackOutputs, database: string): Promise<string> {
  await query(outputs.connections.admin, `CREATE DATABASE ${database} OWNER nb_owner`);
  await query(onDatabase(outputs.connections.admin, database), "CREATE SCHEMA neuralblitz AUTHORIZATION nb_owner; REVOKE CREATE, USAGE ON SCHEMA neuralblitz FROM PUBLIC");
  return onDatabase(outputs.connections.migrator, database);
}

/**
 * A temporary bundle directory holding the ledger migration of sql/ and the files of the named
 * fixtures (test/fixtures/bundles/<name>/{migrations,repeatable}/), later ones replacing earlier.
 */
export function fixtureBundleDir(...fixtures: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-bundles-"));
  fs.mkdirSync(path.join(dir, "migrations"));
  fs.mkdirSync(path.join(dir, "repeatable"));
  fs.copyFileSync(path.join(REPO_BUNDLE_DIR, "migrations", "V001__bundle_ledger.sql"), path.join(dir, "migrations", "V001__bundle_ledger.sql"));
  for (const fixture of fixtures) addFixture(dir, fixture);
  return dir;
}

/** Copy a fixture's files into a bundle directory (replacing files of the same name). */
export function addFixture(dir: string, fixture: string): void {
  for (const sub of ["migrations", "repeatable"]) {
    const from = path.join(FIXTURES, fixture, sub);
    if (!fs.existsSync(from)) continue;
    for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(dir, sub, f));
  }
}

export interface LedgerRow {
  name: string;
  kind: string;
  checksum: string;
  applied_at: Date;
  duration_ms: number;
  applied_by: string;
  tool_version: string;
  xmin: string;
}

export async function ledgerRows(url: string): Promise<LedgerRow[]> {
  const exists = await query<{ t: string | null }>(url, "SELECT to_regclass('neuralblitz.bundle_ledger')::text AS t");
  if (!exists[0].t) return [];
  return query<LedgerRow>(url, "SELECT name, kind, checksum, applied_at, duration_ms, applied_by, tool_version, xmin::text FROM neuralblitz.bundle_ledger ORDER BY name");
}

export async function historyNames(url: string): Promise<string[]> {
  return (await query<{ name: string }>(url, "SELECT name FROM neuralblitz.bundle_ledger_history ORDER BY id")).map((r) => r.name);
}

export async function relationExists(url: string, name: string): Promise<boolean> {
  return (await query<{ t: string | null }>(url, "SELECT to_regclass($1)::text AS t", [name]))[0].t !== null;
}
