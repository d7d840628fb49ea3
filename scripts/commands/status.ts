// nbdb status: each node, the pooler, maintenance and WAL archiving of a stack.
import Table from "cli-table3";
import { status } from "../local/stack";
import { defineCommand, fmt, tableStyle } from "./command";

export default defineCommand({
  name: "status",
  description:
    "show each node (role, port, pid, running, streaming, replication lag), the pooler's pools and the metrics exporters' URLs (PostgreSQL's, PgBouncer's); exit code 1 when a node, the pooler or an exporter is down or a replica is not streaming",
  stack: {},
  run: (o: { stack: string }) => status(o.stack),
  json: { render: (s) => s },
  text(s, _o, print) {
    const nodes = new Table({ ...tableStyle, head: ["node", "role", "port", "pid", "running", "streaming", "lag bytes", "lag s"] });
    for (const n of s.nodes) {
      nodes.push([n.node, n.role, n.port, n.pid ?? "-", n.running ? "yes" : "NO", n.streaming === null ? "-" : n.streaming ? "yes" : "NO", fmt(n.lagBytes), fmt(n.lagSeconds, 3)]);
    }
    print(`stack ${s.stack}`);
    print(nodes.toString());
    const pooler = new Table({ ...tableStyle, head: ["pooler", "version", "port", "pid", "running", "database", "user", "clients active", "clients waiting", "servers active", "servers idle"] });
    const base = ["pgbouncer", s.pooler.version, s.pooler.port, s.pooler.pid ?? "-", s.pooler.running ? "yes" : "NO"];
    if (s.pooler.pools.length === 0) pooler.push([...base, "-", "-", "-", "-", "-", "-"]);
    for (const p of s.pooler.pools) pooler.push([...base, p.database, p.user, p.clientsActive, p.clientsWaiting, p.serversActive, p.serversIdle]);
    print(pooler.toString());
    for (const e of s.monitoring) print(`${e.name} ${e.running ? "running" : "NOT running"}: ${e.url}`);
    const m = s.maintenance;
    if (m) {
      const last = m.lastRun
        ? `last ran ${m.lastRun.finishedAt} (${m.lastRun.source}): ${m.lastRun.partitionsCreated} partitions created, ${m.lastRun.partitionsRetired} retired, ${m.lastRun.rowsMoved} rows moved`
        : "has not run yet (npx nbdb maintain)";
      print(`maintenance ${m.scheduled ? "scheduled hourly by pg_cron" : "not scheduled (no pg_cron on this server)"}; ${last}`);
    }
    const b = s.backup;
    if (b && !b.archiving) print("WAL archiving off (install pgbackrest, then nbdb up and restart the primary as it says): no point-in-time restore");
    else if (b) {
      const last = b.lastArchivedAt ? `last ${b.lastArchivedWal} at ${b.lastArchivedAt}` : "nothing archived yet";
      const failing = b.failing ? `; FAILING since ${b.lastFailedAt} (${b.failedCount} failures, WAL piles up in pg_wal: check the repository and log/pgbackrest/)` : "";
      print(`WAL archiving ${b.failing ? "FAILING" : "ok"}: ${last}; ${b.walWaiting} segment(s) waiting${failing}`);
    }
    for (const p of s.problems) print(`PROBLEM: ${p}`);
    if (s.problems.length > 0) print(`npx nbdb up --stack ${s.stack} repairs the stack.`);
  },
  verdict: (s) => s.problems.length > 0,
});
