// nbdb verify: the live database against sql/, the privilege model and the ledger.
import { Target } from "../ops/target";
import { regenerateVerifySql, verifySchema, verifyStack } from "../ops/verify";
import { defineCommand } from "./command";

type Result = { regenerated: string } | { name: string; drifts: Awaited<ReturnType<typeof verifyStack>> };

export default defineCommand({
  name: "verify",
  description: "check the live database against sql/, the privilege model and the ledger (same verdict as psql -f sql/verify_schema.sql), as nb_migrator; a local stack's passwords too; exit code 1 on any drift",
  stack: {},
  target: true,
  options: [{ flags: "--regenerate", help: "rebuild sql/verify_schema.sql from a throwaway stack built from sql/ (after changing bundles or the model)" }],
  async run(o: { stack: string; target: () => Promise<Target>; regenerate?: boolean }, { log }): Promise<Result> {
    if (o.regenerate) return { regenerated: await regenerateVerifySql(log) };
    const t = await o.target();
    // Only a local stack knows its passwords (state.json): elsewhere the schema check alone.
    return { name: t.name, drifts: t.kind === "local" ? await verifyStack(o.stack) : await verifySchema(t.url("migrator")) };
  },
  // --regenerate reports the file it wrote as text, --json or not.
  json: { render: (r) => ("drifts" in r ? { stack: r.name, drifts: r.drifts } : undefined) },
  text(r, _o, print) {
    if (!("drifts" in r)) return print(`wrote ${r.regenerated}`);
    if (r.drifts.length === 0) return print(`stack ${r.name}: schema verified, no drift`);
    print(`stack ${r.name}: ${r.drifts.length} drift(s)`);
    for (const d of r.drifts) {
      const is = d.problem === "changed" && d.actual && d.actual.length <= 80 && !d.actual.includes("\n") ? ` (is: ${d.actual})` : "";
      print(`- ${d.kind} ${d.name}: ${d.problem}${is}\n    fix: ${d.fix}`);
    }
  },
  verdict: (r) => "drifts" in r && r.drifts.length > 0,
});
