// nbdb backup (take): a pgBackRest backup of the stack's primary.
import { backup, parseBackupType } from "../ops/backup";
import { defineCommand, mb } from "./command";

export default defineCommand({
  name: "backup take",
  description: "take a backup (pgBackRest as the server user, connecting as nb_backup); older full backups beyond the retention expire",
  isDefault: true,
  stack: {},
  options: [{ flags: "--type <type>", help: "full, diff (changes since the last full) or incr (since the last backup)", default: "full" }],
  run: (o: { stack: string; type: string }, { log }) => backup({ stack: o.stack, type: parseBackupType(o.type), log }),
  text(b, o, print) {
    print(`backup ${b.label} (${b.type}) of stack ${o.stack}: ${mb(b.databaseBytes)} MB of data, ${mb(b.repositoryBytes)} MB added to the repository; finished ${b.stop}`);
  },
});
