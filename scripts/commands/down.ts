// nbdb down: stop a stack, keeping its data unless --purge --yes.
import { down } from "../local/stack";
import { defineCommand } from "./command";

export default defineCommand({
  name: "down",
  description: "stop every process of a stack and keep its data (--purge --yes deletes it)",
  stack: {},
  options: [
    { flags: "--purge", help: "also delete the stack's directory and all its data" },
    { flags: "--yes", help: "confirm --purge" },
  ],
  run: (o: { stack: string; purge?: boolean; yes?: boolean }, { log }) => down({ stack: o.stack, purge: o.purge, yes: o.yes, log }),
  text(_r, o, print) {
    print(o.purge ? `stack ${o.stack} stopped and deleted.` : `stack ${o.stack} stopped; its data is kept (npx nbdb up --stack ${o.stack} brings it back).`);
  },
});
