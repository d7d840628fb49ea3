// nbdb grants diff: the privileges granted and revoked since a git revision, as markdown.
import { grantsDiff } from "../ops/grantsDiff";
import { defineCommand } from "./command";

export default defineCommand({
  name: "grants diff",
  description:
    "the privileges granted and revoked per role and object, working tree against a git revision, as a markdown table for a pull-request comment. " +
    "Exit code 0 when nothing changed, 1 when privileges changed, 2 on error",
  options: [{ flags: "--base <git-ref>", help: "the revision to compare with, e.g. origin/main", required: true }],
  run: (o: { base: string }) => grantsDiff(o.base),
  text: (diff, _o, print) => print(diff.markdown),
  verdict: (diff) => diff.changes.length > 0,
});
