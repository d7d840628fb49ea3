// nbdb audit verify: every link of the GoldenDAG audit chain, as nb_auditor.
import { Target } from "../ops/target";
import { parseRecordedHead, verifyAuditTrail } from "../ops/audit";
import { defineCommand } from "./command";

export default defineCommand({
  name: "audit verify",
  description: "check every link of the audit chain (as nb_auditor); exit code 1 when any entry is broken",
  stack: {},
  target: true,
  options: [{ flags: "--expect-head <id:hash>", help: "a head printed by an earlier run: also check the chain still holds it (not rewritten since)" }],
  async run(o: { target: () => Promise<Target>; expectHead?: string }) {
    const expectHead = o.expectHead ? parseRecordedHead(o.expectHead) : undefined;
    return verifyAuditTrail((await o.target()).url("auditor"), expectHead);
  },
  json: { render: (verdict) => verdict },
  text(verdict, _o, print) {
    if (verdict.broken.length === 0) {
      print(`audit chain intact: ${verdict.entries - verdict.unsealed} entries chained (${verdict.unsealed} committing now); head ${verdict.head.id ?? 0}:${verdict.head.hash}`);
      print("Keep the head outside the database; later, --expect-head <that head> proves the chain was not rewritten since.");
    } else {
      print(`audit chain BROKEN: ${verdict.broken.length} of ${verdict.entries} entries`);
      for (const b of verdict.broken) print(`  entry ${b.id}: ${b.reason}`);
    }
  },
  verdict: (verdict) => verdict.broken.length > 0,
});
