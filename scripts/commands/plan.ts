// nbdb plan: the SQL bundles nbdb up would apply or refuse; changes nothing.
import Table from "cli-table3";
import { planDeploy } from "../../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../../infra/bundles/catalog";
import { readOutputs } from "../local/state";
import { defineCommand, tableStyle } from "./command";

export default defineCommand({
  name: "plan",
  description: "list the SQL bundles nbdb up would apply (new, changed repeatable) or refuse (edited migration); changes nothing. Exit code 1 if any is refused",
  stack: {},
  options: [{ flags: "--bundles <dir>", help: "directory of SQL bundles", default: REPO_BUNDLE_DIR }],
  json: {
    render: (plan, o) => ({
      stack: o.stack,
      bundles: plan.map(({ bundle, status, appliedChecksum, reason }) => ({ name: bundle.name, kind: bundle.kind, file: bundle.file, status, checksum: bundle.checksum, appliedChecksum, reason })),
    }),
  },
  run: (o: { stack: string; bundles: string }) => planDeploy({ url: readOutputs(o.stack).connections.migrator }, loadCatalog(o.bundles)),
  text(plan, o, print) {
    const actionable = plan.filter((e) => e.status !== "unchanged");
    if (actionable.length === 0) return print(`stack ${o.stack}: all ${plan.length} bundles are applied; nbdb up would apply nothing.`);
    const table = new Table({ ...tableStyle, head: ["bundle", "kind", "status", "file"] });
    for (const e of actionable) table.push([e.bundle.name, e.bundle.kind, e.status, e.bundle.file]);
    print(`stack ${o.stack}: what nbdb up would do`);
    print(table.toString());
    for (const e of actionable) if (e.reason) print(`refused: ${e.reason}`);
  },
  verdict: (plan) => plan.some((e) => e.status === "refused"),
});
