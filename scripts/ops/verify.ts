// `nbdb verify`: runs the check of sql/verify_schema.sql (the same SQL `psql -f` runs) and reports
// each drift with what to do; `--regenerate` rebuilds that file from a freshly built database.
import * as fs from "fs";
import * as path from "path";
import { Client, ClientConfig } from "pg";
import { DATABASE } from "../../schema/roles";
import { loadCatalog } from "../../infra/bundles/catalog";
import { AUDIT_TRAIL_SQL_FILE } from "../../infra/topology/auditTrail";
import { UserError } from "../errors";
import { down, up } from "../local/stack";
import { HOST, StackState, clientSsl, outputsOf, requireStack, stackDir } from "../local/state";
import { CHECK_BEGIN, CHECK_END, CatalogRow, ExpectedRow, LIVE_CATALOG_SQL, VERIFY_SQL_FILE, renderVerifySql } from "./verifySql";
import { withClient, withTransaction } from "../db";

export interface Drift {
  readonly kind: string;
  readonly name: string;
  readonly problem: "missing" | "extra" | "changed";
  readonly expected: string | null;
  readonly actual: string | null;
  readonly fix: string;
}

function checkSection(sqlText: string, file: string): string {
  const begin = sqlText.indexOf(CHECK_BEGIN);
  const end = sqlText.indexOf(CHECK_END);
  if (begin < 0 || end < begin) throw new Error(`${file} has no '${CHECK_BEGIN}' ... '${CHECK_END}' section: regenerate it with npx nbdb verify --regenerate`);
  return sqlText.slice(begin + CHECK_BEGIN.length, end);
}

/** Every drift of the database at `url` (nb_migrator or a superuser) from sql/ and the privilege model. */
export async function verifySchema(url: string, file: string = VERIFY_SQL_FILE): Promise<Drift[]> {
  if (!fs.existsSync(file)) throw new UserError(`${file} is missing: restore it from version control, or rebuild it with npx nbdb verify --regenerate`);
  const check = checkSection(fs.readFileSync(file, "utf8"), file);
  // Not READ ONLY: the check gathers its findings in a temporary table. Nothing else is written,
  // and the transaction is rolled back.
  return rolledBack(url, async (client) => {
    await client.query(check);
    const { rows } = await client.query("SELECT kind, name, problem, expected, actual, fix FROM nb_verify_drift ORDER BY kind, name");
    return rows as Drift[];
  });
}

/** Runs `fn` in a transaction of its own connection that is always rolled back: verify changes nothing. */
function rolledBack<T>(url: string, fn: (c: Client) => Promise<T>, mode?: string): Promise<T> {
  return withClient(url, (client) => withTransaction(client, fn, { rollback: true, mode }), "nbdb-verify");
}

/** The bundle that defines an object, for the advice beside a drift. */
function sourceOf(row: CatalogRow, bundles: readonly { file: string; sql: string }[]): string {
  if (row.kind === "grant") return "schema/privileges.ts";
  const object = row.kind === "function" ? row.name.replace(/^[a-z_]+\.|\(.*$/g, "") : row.name.split(".")[0];
  const trailKinds = ["relation", "trigger", "function", "owner privilege", "event trigger"];
  if (trailKinds.includes(row.kind) && /^(golden_dag|seal_golden_dag|verify_golden_dag|archive_golden_dag)/.test(object)) return "sql/admin/golden_dag_trail.sql";
  const pattern = row.kind === "row level security" || row.kind === "policy" ? /ROW LEVEL SECURITY/ : new RegExp(`\\b${object}\\b`);
  const defining = bundles.filter((b) => pattern.test(b.sql));
  const creating = defining.find((b) => new RegExp(`CREATE[^;]*\\b${object}\\b`).test(b.sql));
  return (creating ?? defining[0])?.file.replace(/^.*?(sql\/)/, "$1") ?? "sql/";
}

export async function catalogOf(url: string): Promise<CatalogRow[]> {
  return rolledBack(
    url,
    async (client) => {
      await client.query("SET LOCAL search_path = pg_catalog; SET LOCAL TimeZone = 'UTC'");
      const { rows } = await client.query(`SELECT kind, name, detail FROM (${LIVE_CATALOG_SQL}) AS c ORDER BY kind, name`);
      return rows as CatalogRow[];
    },
    "READ ONLY",
  );
}

/** The text sql/verify_schema.sql should have, from the catalog of a database built from sql/. */
export async function expectedVerifySql(freshMigratorUrl: string): Promise<string> {
  // The audit trail's objects come from the administrator's SQL, not from a bundle.
  const bundles = [...loadCatalog(), { file: "sql/admin/golden_dag_trail.sql", sql: fs.readFileSync(AUDIT_TRAIL_SQL_FILE, "utf8") }];
  const expected: ExpectedRow[] = (await catalogOf(freshMigratorUrl)).map((r) => ({ ...r, source: sourceOf(r, bundles) }));
  return renderVerifySql(expected, loadCatalog());
}

/** Build a throwaway stack from sql/, write sql/verify_schema.sql from it, remove the stack. */
export async function regenerateVerifySql(log: (line: string) => void): Promise<string> {
  const stack = `verify-reference-${process.pid}`;
  try {
    log(`building a reference database (stack ${stack})`);
    const { outputs } = await up({ stack, replicas: 0, log });
    fs.writeFileSync(VERIFY_SQL_FILE, await expectedVerifySql(outputs.connections.migrator));
    return VERIFY_SQL_FILE;
  } finally {
    await down({ stack, purge: true, yes: true }).catch(() => undefined);
  }
}

/**
 * Whether each role the stack knows a password for (state.json) still logs in with it: a changed
 * password verifier (ALTER ROLE ... PASSWORD by the role itself or anyone else) locks the stack's
 * URLs out and hands the role to whoever set it. Probed by logging in, so no role needs to read
 * pg_authid; only a refused password counts (a pg_hba refusal of a direct login is tried through
 * the pooler instead). Only the local stack knows its passwords; sql/verify_schema.sql cannot check this.
 */
export async function verifyPasswords(state: StackState): Promise<Drift[]> {
  const drifts: Drift[] = [];
  const attempt = async (user: string, password: string, port: number, database: string, replication: boolean): Promise<string | null> => {
    // Over TLS verified against the stack's CA, as every login of the stack (plain TCP is refused).
    const config = { host: HOST, port, user, password, database, ssl: clientSsl(state.stack), ...(replication ? { replication: "true" } : {}) } as ClientConfig;
    return withClient(config, async () => null, "nbdb-verify").catch((e: { code?: string }) => e.code ?? "error");
  };
  // A role past VALID UNTIL is refused whatever its password: that drift is the role's, reported as such.
  const expired = new Set(
    (await withClient(outputsOf(state).connections.migrator, (c) => c.query("SELECT rolname FROM pg_catalog.pg_roles WHERE rolvaliduntil < pg_catalog.now()"), "nbdb-verify")).rows.map((r) => r.rolname as string),
  );
  for (const [role, password] of Object.entries(state.passwords).filter(([r]) => !expired.has(r))) {
    const replication = role === "nb_replicator";
    let code = await attempt(role, password, state.ports.primary, replication ? "postgres" : DATABASE, replication);
    if (code === "28000" && !replication) code = await attempt(role, password, state.ports.pooler, DATABASE, false);
    if (code === "28P01") {
      drifts.push({
        kind: "password",
        name: role,
        problem: "changed",
        expected: "the password in state.json",
        actual: "another password: the login is refused",
        fix: `someone changed ${role}'s password: set it back as the administrator (ALTER ROLE ${role} PASSWORD '<${role} in ${path.join(stackDir(state.stack), "state.json")}>'), and find out who changed it`,
      });
    }
  }
  return drifts;
}


/** nbdb verify on a local stack: the schema check plus the password probes. */
export async function verifyStack(stack: string): Promise<Drift[]> {
  const state = requireStack(stack);
  const drifts = [...(await verifySchema(outputsOf(state).connections.migrator)), ...(await verifyPasswords(state))];
  return drifts.sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
}
