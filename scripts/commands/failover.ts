// nbdb failover: the primary is gone; promote the most advanced replica (docs/switchover.md).
import { describeRoleChange, failover } from "../local/switchover";
import { defineCommand } from "./command";

export default defineCommand({
  name: "failover",
  description:
    "the primary is gone: promote the most advanced replica, the pooler onto it, the old primary rewound (or rebuilt) as a replica; refused while the primary runs",
  stack: {},
  run: (o: { stack: string }, { log }) => failover({ stack: o.stack, log }),
  text: (r, _o, print) => describeRoleChange(r).forEach((l) => print(l)),
});
