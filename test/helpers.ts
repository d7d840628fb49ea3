// Shared test helpers: real stacks on free ports, and one-shot queries.
import { createHash, randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";

/** A stack name no other test uses. */
export function uniqueStack(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString("hex")}`;
}

/** Run one statement on a connection string and return its rows. */
export async function query<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** The error message a promise rejects with (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected a rejection, but it resolved");
}

/** Statements as a superuser skipping every trigger (session_replication_role = replica), as only a superuser can. */
export async function asSuperuser(out: { connections: { admin: string } }, sql: string, params: unknown[] = []): Promise<void> {
  const c = new Client({ connectionString: out.connections.admin });
  await c.connect();
  try {
    await c.query("SET session_replication_role = replica");
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}

/** A digest of every file's path, mode and content under `dir`: equal only when nothing in it changed. */
export function treeDigest(dir: string): string {
  const h = createHash("sha256");
  const walk = (d: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const f = path.join(d, name);
      const st = fs.lstatSync(f);
      h.update(`${path.relative(dir, f)}\0${st.mode}\0`);
      if (st.isDirectory()) walk(f);
      else if (st.isFile()) h.update(fs.readFileSync(f));
    }
  };
  walk(dir);
  return h.digest("hex");
}

/** n audited rows (monitoring_alerts named <rule>-<i>), their entries then sealed by the auditor. */
export async function addAuditedRows(out: { connections: { admin: string; auditor: string } }, rule: string, n: number): Promise<void> {
  await query(
    out.connections.admin,
    `INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity)
     SELECT $1 || '-' || g, 'm', '>', g, 'info' FROM generate_series(1, $2::int) AS g`,
    [rule, n],
  );
  await query(out.connections.auditor, "SELECT neuralblitz.seal_golden_dag(interval '0')");
}
