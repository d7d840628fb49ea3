// nbdb restore: a stack as it was at a point in time, into a new stack.
import { outputsFile } from "../local/state";
import { restore } from "../ops/backup";
import { defineCommand, stackName } from "./command";

export default defineCommand({
  name: "restore",
  description: "restore a stack as it was at a point in time into a NEW stack (own ports and passwords, same data key); the source is never touched",
  stack: { help: "the source stack" },
  options: [
    { flags: "--to <time>", help: "the time to restore to, with its zone (e.g. 2026-12-01T22:30:00Z)", required: true },
    { flags: "--into <name>", help: "the new stack to create", parse: stackName, required: true },
  ],
  run: (o: { stack: string; to: string; into: string }, { log }) => restore({ stack: o.stack, to: o.to, into: o.into, log }),
  text(r, o, print) {
    print(`stack ${o.into} restored from ${o.stack} as of ${r.target} (backup ${r.from}); primary ${r.outputs.primary.host}:${r.outputs.primary.port}, pooler ${r.outputs.pooler.host}:${r.outputs.pooler.port}`);
    print(`connection strings (new passwords): ${outputsFile(o.into)}`);
  },
});
