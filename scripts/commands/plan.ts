// nbdb plan: the SQL bundles nbdb up would apply or refuse; changes nothing.
import Table from "cli-table3";
import { planDeploy } from "../../infra/bundles/applier";
import { PlanEntry } from "../../infra/bundles/plan";
import { REPO_BUNDLE_DIR, loadCatalog } from "../../infra/bundles/catalog";
import { Target } from "../ops/target";
import { defineCommand, tableStyle } from "./command";

type Options = { target: () => Promise<Target>; bundles: string };

export default defineCommand<Options, { name: string; plan: PlanEntry[] }>({
  name: "plan",
  description: "list the SQL bundles nbdb up would apply (new, changed repeatable) or refuse (edited migration); changes nothing; as nb_migrator. Exit code 1 if any is refused",
  stack: {},
  target: true,
  options: [{ flags: "--bundles <dir>", help: "directory of SQL bundles", default: REPO_BUNDLE_DIR }],
  json: {
    render: ({ plan, name }) => ({
      stack: name,
      bundles: plan.map(({ bundle, status, appliedChecksum, reason }) => ({ name: bundle.name, kind: bundle.kind, file: bundle.file, status, checksum: bundle.checksum, appliedChecksum, reason })),
    }),
  },
  async run(o) {
    const t = await o.target();
    return { name: t.name, plan: await planDeploy({ url: t.url("migrator") }, loadCatalog(o.bundles)) };
  },
  text({ plan, name }, _o, print) {
    const actionable = plan.filter((e) => e.status !== "unchanged");
    if (actionable.length === 0) return print(`stack ${name}: all ${plan.length} bundles are applied; nbdb up would apply nothing.`);
    const table = new Table({ ...tableStyle, head: ["bundle", "kind", "status", "file"] });
    for (const e of actionable) table.push([e.bundle.name, e.bundle.kind, e.status, e.bundle.file]);
    print(`stack ${name}: what nbdb up would do`);
    print(table.toString());
    for (const e of actionable) if (e.reason) print(`refused: ${e.reason}`);
  },
  verdict: ({ plan }) => plan.some((e) => e.status === "refused"),
});
