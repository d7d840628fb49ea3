// The SQL bundles in a directory (by default the repository's sql/), as typed values with their
// checksums, in the order they apply: every versioned migration by version, then every repeatable
// bundle by its declared order.
//
//   <dir>/migrations/V<version>__<name>.sql   applied once, forward-only, never edited afterwards
//   <dir>/repeatable/R<order>__<name>.sql     re-applied whenever its checksum changes
//
// A bundle that cannot run in a transaction says so in its header: `-- nbdb:no-transaction`.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { BundleError } from "./errors";
import { SqlStatement, SqlSyntaxError, lineAndColumn, splitStatements } from "./sqlSplit";

export type BundleKind = "versioned" | "repeatable";

export interface Bundle {
  /** File name without `.sql`: the bundle's identity in the ledger. */
  readonly name: string;
  readonly kind: BundleKind;
  /** The version of a migration, or the declared order of a repeatable bundle. */
  readonly order: number;
  /** Where the bundle came from, as errors should name it. */
  readonly file: string;
  /** The text applied: the file with a byte-order mark removed and CRLF line ends made LF. */
  readonly sql: string;
  /** sha256 of `sql`, hex. */
  readonly checksum: string;
  readonly transactional: boolean;
}

export const REPO_BUNDLE_DIR = path.resolve(__dirname, "..", "..", "sql");
export const NO_TRANSACTION_DIRECTIVE = "-- nbdb:no-transaction";

/** A bundle's `<name>`: lower-case snake_case. */
export const BUNDLE_NAME = /^[a-z0-9]+(?:_[a-z0-9]+)*$/;
const NAME = BUNDLE_NAME.source.slice(1, -1);

const LAYOUT = [
  { kind: "versioned", subdir: "migrations", pattern: new RegExp(`^V(\\d+)__(${NAME})\\.sql$`), example: "V012__add_metrics.sql" },
  { kind: "repeatable", subdir: "repeatable", pattern: new RegExp(`^R(\\d+)__(${NAME})\\.sql$`), example: "R020__audit_functions.sql" },
] as const;

// Statements that would start, commit or abandon the applier's transaction behind its back
// (savepoints stay inside it and are allowed).
const TRANSACTION_CONTROL = new Set(["TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_PREPARE"]);

export function checksumOf(sql: string): string {
  return createHash("sha256").update(sql, "utf8").digest("hex");
}

/** Paths inside the working directory read relative to it (`sql/migrations/V001__x.sql`). */
function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel.startsWith("..") || path.isAbsolute(rel) ? file : rel;
}

function declaresNoTransaction(sql: string, statements: readonly SqlStatement[]): boolean {
  const header = sql.slice(0, statements[0]?.offset ?? sql.length);
  return header.split("\n").some((line) => line.trim() === NO_TRANSACTION_DIRECTIVE);
}

function refuseTransactionControl(file: string, sql: string, statements: readonly SqlStatement[]): void {
  const control = statements.find((s) => s.transactionKind !== undefined && TRANSACTION_CONTROL.has(s.transactionKind));
  if (!control) return;
  const { line, column } = lineAndColumn(sql, control.offset);
  throw new BundleError(
    `${file}:${line}:${column}: a bundle must not control its transaction ('${control.text.split(/\s/)[0]}'): the applier runs each bundle in its own transaction. ` +
      `Remove the statement; if the bundle's statements cannot run in a transaction, declare '${NO_TRANSACTION_DIRECTIVE}' in its header instead.`,
  );
}

/** The bundle's statements, or an error naming where PostgreSQL's parser stopped and why. */
function parseBundle(file: string, sql: string): SqlStatement[] {
  try {
    return splitStatements(sql);
  } catch (e) {
    if (!(e instanceof SqlSyntaxError)) throw e;
    const { line, column } = lineAndColumn(sql, e.index);
    throw new BundleError(
      `${file}:${line}:${column}: PostgreSQL's parser refuses the bundle: ${e.pgMessage}. Nothing was applied; fix the SQL there (bundles are written for PostgreSQL 15, the oldest server version the platform runs).`,
    );
  }
}

/** A bundle from its text; `file` names it in messages. */
export function bundleFromText(file: string, kind: BundleKind, order: number, name: string, text: string): Bundle {
  const sql = text.replace(/^\uFEFF/, "").replace(/\r\n/g, "\n");
  const statements = parseBundle(file, sql);
  const transactional = !declaresNoTransaction(sql, statements);
  if (transactional) refuseTransactionControl(file, sql, statements);
  return { name, kind, order, file, sql, checksum: checksumOf(sql), transactional };
}

function readKind(dir: string, layout: (typeof LAYOUT)[number]): Bundle[] {
  const sub = path.join(dir, layout.subdir);
  if (!fs.existsSync(sub)) return [];
  const bundles: Bundle[] = [];
  for (const entry of fs.readdirSync(sub).filter((f) => f.endsWith(".sql")).sort()) {
    const m = layout.pattern.exec(entry);
    const file = displayPath(path.join(sub, entry));
    if (!m) {
      throw new BundleError(`${file}: a ${layout.kind} bundle must be named like ${layout.example} (${layout.subdir}/${layout.pattern.source}); rename it.`);
    }
    bundles.push(bundleFromText(file, layout.kind, Number(m[1]), entry.slice(0, -".sql".length), fs.readFileSync(path.join(sub, entry), "utf8")));
  }
  bundles.sort((a, b) => a.order - b.order);
  for (let i = 1; i < bundles.length; i++) {
    if (bundles[i].order === bundles[i - 1].order) {
      throw new BundleError(`${bundles[i - 1].file} and ${bundles[i].file} share the number ${bundles[i].order}: give each ${layout.kind} bundle its own, so the order is unambiguous.`);
    }
  }
  return bundles;
}

/** Every bundle under `dir`, in the order they apply. */
export function loadCatalog(dir: string = REPO_BUNDLE_DIR): Bundle[] {
  if (!fs.existsSync(dir)) throw new BundleError(`no bundle directory ${dir}: it should hold migrations/ and repeatable/.`);
  return LAYOUT.flatMap((layout) => readKind(dir, layout));
}

/** The version the next migration takes: one above the highest. */
export function nextMigrationVersion(bundles: readonly Pick<Bundle, "kind" | "order">[]): number {
  return Math.max(0, ...bundles.filter((b) => b.kind === "versioned").map((b) => b.order)) + 1;
}

/** A migration's file name: `V<version>__<name>.sql`, the version padded to three digits. */
export function migrationFileName(version: number, name: string): string {
  return `V${String(version).padStart(3, "0")}__${name}.sql`;
}

/** The file name the next migration should take, e.g. `V004__<name>.sql`. */
export function nextMigrationName(bundles: readonly Pick<Bundle, "kind" | "order">[]): string {
  return migrationFileName(nextMigrationVersion(bundles), "<name>");
}
