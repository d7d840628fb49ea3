// Many concurrent clients through PgBouncer: each runs the per-user read transaction as nb_app
// while the primary's server connections for nb_app are counted every 100 ms (on the primary, so
// the count takes no client slot of the pooler). Also reads the pooler's limits that decide it.
import * as fs from "fs";
import * as path from "path";
import { localContext } from "../local/context";
import { poolerDir, poolerPid } from "../local/pooler";
import { benchUsers } from "./fixtures";
import { withClient } from "./db";
import { pgbench } from "./pgbench";
import { perUserScript } from "./perUserScript";
import { sampling, spread } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const MAX_SERVER_CONNECTIONS = 20;

function poolerLimits(stack: string): { openFiles: string; settings: string } {
  const ctx = localContext(stack, () => undefined);
  const pid = poolerPid(ctx);
  const limits = pid ? fs.readFileSync(`/proc/${pid}/limits`, "utf8") : "";
  const openFiles = /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1] ?? "unknown";
  const ini = fs.readFileSync(path.join(poolerDir(ctx), "pgbouncer.ini"), "utf8");
  const settings = ["max_client_conn", "default_pool_size", "reserve_pool_size"].map((k) => new RegExp(`^${k} = .*$`, "m").exec(ini)?.[0] ?? `${k} unset`).join(", ");
  return { openFiles, settings };
}

export const manyClients: Benchmark = {
  id: "clients",
  title: "many concurrent clients",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const { clients, seconds } = sized(ctx, { quick: { clients: 50, seconds: 1 }, full: { clients: 1000, seconds: 8 } });
    const { users } = benchUsers(ctx);
    const script = perUserScript(users, () => "neuralblitz.quantum_neurons");
    const rounds = await withClient(ctx.outputs.connections.admin, async (monitor) => {
      const serverConnections = async () =>
        Number((await monitor.query("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'nb_app' AND backend_type = 'client backend'")).rows[0].n);
      const results = [];
      for (let round = 0; round < ctx.rounds; round++) {
        ctx.note(`${clients} clients through PgBouncer, round ${round + 1}/${ctx.rounds}`);
        const { result, samples } = await sampling(100, serverConnections, () => pgbench(ctx, { script, url: ctx.outputs.connections.app, clients, seconds }));
        results.push({ maxServer: Math.max(...samples), errors: result.errors, tps: result.tps });
      }
      return results;
    });
    const value = spread(rounds.map((r) => r.maxServer));
    const errors = rounds.reduce((n, r) => n + r.errors, 0);
    const limits = poolerLimits(ctx.stack);
    return [
      {
        id: "pooler.many_clients",
        title: `${clients} concurrent clients through the pooler`,
        against: "the pool's server connections on the primary, and client errors",
        goal: `≤ ${MAX_SERVER_CONNECTIONS} server connections, zero errors`,
        value,
        unit: "server connections (most seen in a round)",
        met: value.max <= MAX_SERVER_CONNECTIONS && errors === 0,
        method: `pgbench, ${clients} clients as nb_app through PgBouncer, ${seconds} s per round, each transaction the per-user read of a random bench user; nb_app's backends on the primary counted every 100 ms.`,
        details: { clients, errors, tps: spread(rounds.map((r) => r.tps)) },
        evidence: [`pgbouncer: ${limits.settings}; its open-files limit is ${limits.openFiles}`],
      },
    ];
  },
};
