// `nbdb migration new <name>`: the next migration's file, with the next free version and the header
// comment every migration starts with (docs/bundles.md, "Adding a migration").
import * as fs from "fs";
import * as path from "path";
import { BUNDLE_NAME, REPO_BUNDLE_DIR, loadCatalog, migrationFileName, nextMigrationVersion } from "../../infra/bundles/catalog";
import { UserError } from "../errors";

export interface NewMigration {
  readonly file: string;
  readonly version: number;
}

function template(fileName: string): string {
  return [
    `-- ${fileName.slice(0, -".sql".length)}: <what this migration creates or changes, in one line>.`,
    "-- Why: <the reason, and what a reviewer must know: locks it takes, rows it moves, what depends on it>.",
    "--",
    "-- Applied once, in version order, as nb_migrator with SET LOCAL ROLE nb_owner and",
    "-- search_path = pg_catalog (qualify every name: neuralblitz.<name>), in one transaction with its",
    "-- ledger row. Once applied anywhere it is never edited: put a change in a new migration",
    "-- (npx nbdb migration new <name>). Statements that cannot run in a transaction (CREATE INDEX",
    "-- CONCURRENTLY, ...) go in a migration whose header has the line: -- nbdb:no-transaction",
    "",
  ].join("\n");
}

/** Write `<dir>/migrations/V<next>__<name>.sql` with the header template; never overwrites. */
export function newMigration(name: string, dir: string = REPO_BUNDLE_DIR): NewMigration {
  if (!BUNDLE_NAME.test(name)) {
    throw new UserError(`invalid migration name '${name}': use lower-case snake_case, letters and digits separated by single '_' (e.g. add_metric_labels).`);
  }
  if (!fs.existsSync(dir)) throw new UserError(`no bundle directory ${dir}: it should hold migrations/ and repeatable/ (--dir names another one).`);
  const bundles = loadCatalog(dir);
  const taken = bundles.find((b) => b.kind === "versioned" && b.name.replace(/^V\d+__/, "") === name);
  if (taken) throw new UserError(`${taken.file} already uses the name '${name}': choose a name that says what this migration does.`);
  const version = nextMigrationVersion(bundles);
  const migrations = path.join(dir, "migrations");
  fs.mkdirSync(migrations, { recursive: true });
  const file = path.join(migrations, migrationFileName(version, name));
  try {
    // 'wx': fails rather than overwrite, even if another process wrote the file since the catalog was read.
    fs.writeFileSync(file, template(path.basename(file)), { flag: "wx" });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new UserError(`${file} exists already: nothing was written. Run the command again for the next free version.`);
    throw e;
  }
  return { file, version };
}
