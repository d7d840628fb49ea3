// nbdb migration new: write the next sql/migrations/V<n>__<name>.sql.
import { REPO_BUNDLE_DIR } from "../../infra/bundles/catalog";
import { newMigration } from "../ops/migration";
import { defineCommand } from "./command";

export default defineCommand({
  name: "migration new",
  description: "write sql/migrations/V<next>__<name>.sql: the next free version and the header comment to fill in; never overwrites",
  args: [{ name: "name", help: "what the migration does, lower-case snake_case (e.g. add_metric_labels)" }],
  options: [{ flags: "--dir <dir>", help: "another bundle directory (holding migrations/ and repeatable/)", default: REPO_BUNDLE_DIR }],
  run: (o: { name: string; dir: string }) => newMigration(o.name, o.dir),
  text: (m, _o, print) => print(`wrote ${m.file} (version ${m.version}): fill in its header and SQL, then npx nbdb plan lists it as new.`),
});
