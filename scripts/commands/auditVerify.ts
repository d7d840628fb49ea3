// nbdb audit verify: every link of the GoldenDAG audit chain, as nb_auditor.
import { Target } from "../ops/target";
import { parseRecordedHead, verifyAuditTrail } from "../ops/audit";
import { defineCommand } from "./command";

export default defineCommand({
  name: "audit verify",
  description: "check every link of the audit chain (as nb_auditor); exit code 1 when any entry is broken",
  stack: {},
  target: true,
  options: [
    { flags: "--expect-head <id:hash>", help: "a head printed by an earlier run: also check the chain still holds it (not rewritten since)" },
    { flags: "--since-head <id:hash>", help: "a head printed by an earlier run: check the chain still holds it and verify only the entries chained after it (incremental)" },
  ],
  async run(o: { target: () => Promise<Target>; expectHead?: string; sinceHead?: string }) {
    const expectHead = o.expectHead ? parseRecordedHead(o.expectHead) : undefined;
    const sinceHead = o.sinceHead ? parseRecordedHead(o.sinceHead, "--since-head") : undefined;
    return verifyAuditTrail((await o.target()).url("auditor"), expectHead, sinceHead);
  },
  json: { render: (verdict) => verdict },
  text(verdict, o, print) {
    if (verdict.broken.length === 0) {
      const scope = verdict.scope === "since-head" ? `intact since ${o.sinceHead!.split(":")[0]}` : "intact";
      print(`audit chain ${scope}: ${verdict.entries - verdict.unsealed} entries chained (${verdict.unsealed} committing now); head ${verdict.head.id ?? 0}:${verdict.head.hash}`);
      print("Keep the head outside the database; later, --expect-head <that head> proves the chain was not rewritten since.");
    } else {
      print(`audit chain BROKEN: ${verdict.broken.length} of ${verdict.entries} entries`);
      for (const b of verdict.broken) print(`  entry ${b.id}: ${b.reason}`);
    }
  },
  verdict: (verdict) => verdict.broken.length > 0,
});
