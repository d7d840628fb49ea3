// nbdb backup list: the stack's backups and the window a restore reaches.
import Table from "cli-table3";
import { listBackups } from "../ops/backup";
import { defineCommand, mb, tableStyle } from "./command";

export default defineCommand({
  name: "backup list",
  description: "the stack's backups and the earliest time a restore can reach",
  stack: {},
  run: (o: { stack: string }) => listBackups(o.stack),
  json: { render: (l) => l },
  text(l, o, print) {
    if (l.backups.length === 0) return print(`stack ${o.stack} has no backup yet (repository ${l.repository}); take one with: npx nbdb backup --stack ${o.stack}`);
    const t = new Table({ ...tableStyle, head: ["backup", "type", "started", "finished", "data MB", "added MB", "WAL from", "WAL to"] });
    for (const b of l.backups) t.push([b.label, b.type, b.start, b.stop, mb(b.databaseBytes), mb(b.repositoryBytes), b.walStart, b.walStop]);
    print(t.toString());
    print(`repository ${l.repository}; a restore reaches any time from ${l.earliestRestore} to the last archived WAL (${l.latestArchivedWal ?? "-"})`);
  },
});
