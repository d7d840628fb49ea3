// nbdb switchover: a planned change of primary with no committed transaction lost (docs/switchover.md).
import { describeRoleChange, switchover } from "../local/switchover";
import { defineCommand } from "./command";

export default defineCommand({
  name: "switchover",
  description:
    "planned change of primary with no committed transaction lost: writes wait at the pooler, the primary stops cleanly, the replica (default: least lag) is promoted, the old primary re-attached as that replica",
  stack: {},
  options: [{ flags: "--to <replica>", help: "the replica to promote, e.g. replica-1" }],
  run: (o: { stack: string; to?: string }, { log }) => switchover({ stack: o.stack, to: o.to, log }),
  text: (r, _o, print) => describeRoleChange(r).forEach((l) => print(l)),
});
