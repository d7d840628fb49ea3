// nbdb failover: the primary is gone; promote the most advanced replica (docs/switchover.md), on a
// local stack (--stack) or a Docker stack of the Pulumi program (--pulumi-stack).
import { RoleChangeResult, describeRoleChange, failover } from "../local/switchover";
import { DockerRoleChangeResult, describeDockerRoleChange, dockerFailover } from "../ops/dockerRoleChange";
import { defineCommand } from "./command";
import { PULUMI_STACK_OPTION } from "./switchover";

export default defineCommand({
  name: "failover",
  description:
    "the primary is gone: promote the most advanced replica, the pooler onto it, the old primary rewound (or rebuilt) as a replica; refused while the primary runs",
  stack: {},
  options: [PULUMI_STACK_OPTION],
  run: (o: { stack: string; pulumiStack?: string }, { log }): Promise<RoleChangeResult | DockerRoleChangeResult> => (o.pulumiStack !== undefined ? dockerFailover({ stack: o.pulumiStack, log }) : failover({ stack: o.stack, log })),
  text: (r, _o, print) => ("outputs" in r ? describeRoleChange(r) : describeDockerRoleChange(r)).forEach((l) => print(l)),
});
