// `nbdb verify`: runs the check of sql/verify_schema.sql (the same SQL `psql -f` runs) and reports
// each drift with what to do; `--regenerate` rebuilds that file from a freshly built database.
import * as fs from "fs";
import { Client } from "pg";
import { loadCatalog } from "../../infra/bundles/catalog";
import { UserError } from "../local/errors";
import { down, up } from "../local/stack";
import { CHECK_BEGIN, CHECK_END, CatalogRow, ExpectedRow, LIVE_CATALOG_SQL, VERIFY_SQL_FILE, renderVerifySql } from "./verifySql";

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
  const client = new Client({ connectionString: url, application_name: "nbdb-verify" });
  await client.connect();
  try {
    // Not READ ONLY: the check gathers its findings in a temporary table. Nothing else is written,
    // and the transaction is rolled back.
    await client.query("BEGIN");
    await client.query(check);
    const { rows } = await client.query("SELECT kind, name, problem, expected, actual, fix FROM nb_verify_drift ORDER BY kind, name");
    return rows as Drift[];
  } finally {
    await client.query("ROLLBACK").catch(() => undefined);
    await client.end();
  }
}

/** The bundle that defines an object, for the advice beside a drift. */
function sourceOf(row: CatalogRow, bundles: readonly { file: string; sql: string }[]): string {
  if (row.kind === "grant") return "schema/privileges.ts";
  const object = row.kind === "function" ? row.name.replace(/^[a-z_]+\.|\(.*$/g, "") : row.name.split(".")[0];
  const pattern = row.kind === "row level security" || row.kind === "policy" ? /ROW LEVEL SECURITY/ : new RegExp(`\\b${object}\\b`);
  const defining = bundles.filter((b) => pattern.test(b.sql));
  const creating = defining.find((b) => new RegExp(`CREATE[^;]*\\b${object}\\b`).test(b.sql));
  return (creating ?? defining[0])?.file.replace(/^.*?(sql\/)/, "$1") ?? "sql/";
}

export async function catalogOf(url: string): Promise<CatalogRow[]> {
  const client = new Client({ connectionString: url, application_name: "nbdb-verify" });
  await client.connect();
  try {
    await client.query("BEGIN READ ONLY");
    await client.query("SET LOCAL search_path = pg_catalog; SET LOCAL TimeZone = 'UTC'");
    const { rows } = await client.query(`SELECT kind, name, detail FROM (${LIVE_CATALOG_SQL}) AS c ORDER BY kind, name`);
    return rows as CatalogRow[];
  } finally {
    await client.query("ROLLBACK").catch(() => undefined);
    await client.end();
  }
}

/** The text sql/verify_schema.sql should have, from the catalog of a database built from sql/. */
export async function expectedVerifySql(freshMigratorUrl: string): Promise<string> {
  const bundles = loadCatalog();
  const expected: ExpectedRow[] = (await catalogOf(freshMigratorUrl)).map((r) => ({ ...r, source: sourceOf(r, bundles) }));
  return renderVerifySql(expected, bundles);
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
