// nbdb verify: the live database against sql/, the privilege model and the ledger.
import { regenerateVerifySql, verifyStack } from "../ops/verify";
import { defineCommand } from "./command";

type Result = { regenerated: string } | { drifts: Awaited<ReturnType<typeof verifyStack>> };

export default defineCommand({
  name: "verify",
  description: "check the live database against sql/, the privilege model and the ledger (same verdict as psql -f sql/verify_schema.sql); exit code 1 on any drift",
  stack: {},
  options: [{ flags: "--regenerate", help: "rebuild sql/verify_schema.sql from a throwaway stack built from sql/ (after changing bundles or the model)" }],
  run: async (o: { stack: string; regenerate?: boolean }, { log }): Promise<Result> =>
    o.regenerate ? { regenerated: await regenerateVerifySql(log) } : { drifts: await verifyStack(o.stack) },
  // --regenerate reports the file it wrote as text, --json or not.
  json: { render: (r, o) => ("drifts" in r ? { stack: o.stack, drifts: r.drifts } : undefined) },
  text(r, o, print) {
    if (!("drifts" in r)) return print(`wrote ${r.regenerated}`);
    if (r.drifts.length === 0) return print(`stack ${o.stack}: schema verified, no drift`);
    print(`stack ${o.stack}: ${r.drifts.length} drift(s)`);
    for (const d of r.drifts) {
      const is = d.problem === "changed" && d.actual && d.actual.length <= 80 && !d.actual.includes("\n") ? ` (is: ${d.actual})` : "";
      print(`- ${d.kind} ${d.name}: ${d.problem}${is}\n    fix: ${d.fix}`);
    }
  },
  verdict: (r) => "drifts" in r && r.drifts.length > 0,
});
