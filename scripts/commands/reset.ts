// nbdb reset: rebuild a local stack from nothing.
import { pgServiceFile } from "../local/pgService";
import { outputsFile } from "../local/state";
import { reset } from "../ops/reset";
import { parseScale } from "../ops/seed";
import { defineCommand } from "./command";

export default defineCommand({
  name: "reset",
  description: "rebuild a local stack from nothing: down, purge (all its data), up with the same replica count, seed. Refused for a production stack",
  stack: {},
  options: [
    { flags: "--yes", help: "confirm deleting all of the stack's data" },
    { flags: "--scale <s>", help: "seed data volume (as nbdb seed)", default: "1" },
  ],
  run: (o: { stack: string; yes?: boolean; scale: string }, { log }) => reset({ stack: o.stack, yes: o.yes, scale: parseScale(o.scale), log }),
  text(r, o, print) {
    print(`stack ${o.stack} reset: ${r.replicas} replica(s), ${r.seededRows} seed rows; new passwords in ${outputsFile(o.stack)} and ${pgServiceFile(o.stack)}.`);
  },
});
