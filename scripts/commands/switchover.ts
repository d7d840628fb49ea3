// nbdb switchover: a planned change of primary with no committed transaction lost (docs/switchover.md),
// on a local stack (--stack) or a Docker stack of the Pulumi program (--pulumi-stack).
import { describeRoleChange, switchover } from "../local/switchover";
import { describeDockerRoleChange, dockerResume, dockerSwitchover } from "../ops/dockerRoleChange";
import { UserError } from "../errors";
import { defineCommand } from "./command";

export const PULUMI_STACK_OPTION = {
  flags: "--pulumi-stack <name>",
  help: "a Docker stack of the Pulumi program (run in its project directory): its containers through the docker CLI, the volumes by config, then pulumi up",
};

export default defineCommand({
  name: "switchover",
  description:
    "planned change of primary with no committed transaction lost: the primary stops cleanly, the replica (default: least lag) is promoted once it has the primary's last WAL, the old primary re-attached as that replica",
  stack: {},
  options: [
    { flags: "--to <replica>", help: "the replica to promote, e.g. replica-1" },
    PULUMI_STACK_OPTION,
    { flags: "--resume", help: "with --pulumi-stack: finish (the target was promoted) or undo (it was not) an interrupted switchover or failover of the Docker stack" },
  ],
  async run(o: { stack: string; to?: string; pulumiStack?: string; resume?: boolean }, { log }) {
    if (o.pulumiStack !== undefined) {
      if (o.resume && o.to !== undefined) throw new UserError("--resume finishes the change already recorded: give it without --to.");
      return o.resume ? dockerResume({ stack: o.pulumiStack, log }) : dockerSwitchover({ stack: o.pulumiStack, to: o.to, log });
    }
    if (o.resume) throw new UserError(`--resume is for Docker stacks (--pulumi-stack <name>); on a local stack, npx nbdb up --stack ${o.stack} finishes an interrupted switchover.`);
    return switchover({ stack: o.stack, to: o.to, log });
  },
  text: (r, _o, print) => ("outputs" in r ? describeRoleChange(r) : describeDockerRoleChange(r)).forEach((l) => print(l)),
});
