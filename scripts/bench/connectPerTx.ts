// Connection-per-transaction tps (pgbench -C): every transaction opens a new connection, as
// short-lived clients (serverless functions, cron jobs, PHP) do. Through PgBouncer the server
// connection is reused; straight to the primary every transaction pays a backend start.
import { localContext } from "../local/context";
import { primarySocketDir } from "../local/postgresNode";
import { atPort } from "./db";
import { pgbench } from "./pgbench";
import { alternate, ratios, spread } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const CLIENTS = 8;
const SCRIPT = "SELECT 1;\n";

export const connectPerTx: Benchmark = {
  id: "connect",
  title: "connection per transaction",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const seconds = sized(ctx, { quick: 1, full: 4 });
    const pooled = ctx.outputs.connections.app;
    // pg_hba.conf admits nb_app on the primary only over its Unix socket (the pooler's way in).
    const direct = atPort(pooled, ctx.outputs.primary.port);
    const socket = { PGHOST: primarySocketDir(localContext(ctx.stack, () => undefined)) };
    const tps = (url: string, label: string, env?: NodeJS.ProcessEnv) => async (round: number) => {
      ctx.note(`pgbench -C ${label}, round ${round + 1}/${ctx.rounds}`);
      return (await pgbench(ctx, { script: SCRIPT, url, clients: CLIENTS, seconds, connectPerTransaction: true, env })).tps;
    };
    const sides = await alternate(ctx.rounds, { subject: tps(pooled, "through PgBouncer"), baseline: tps(direct, "direct to the primary", socket) });
    const value = ratios(sides.subject, sides.baseline);
    return [
      {
        id: "pooler.connect_per_tx",
        title: "connection-per-transaction tps through PgBouncer (pgbench -C)",
        against: "the same login (nb_app, SCRAM) straight to the primary, over its Unix socket (the only way pg_hba.conf admits nb_app)",
        goal: "≥ 20×",
        value,
        unit: "× direct tps",
        met: value.median >= 20,
        method: `pgbench -C with a one-statement transaction (SELECT 1), ${CLIENTS} clients, ${seconds} s per side per round; both sides authenticate with SCRAM-SHA-256.`,
        details: { pooledTps: spread(sides.subject), directTps: spread(sides.baseline) },
        evidence: [],
      },
    ];
  },
};
