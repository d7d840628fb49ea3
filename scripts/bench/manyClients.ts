// Many concurrent clients through PgBouncer, and what serving them costs: each of 1,000 clients
// runs the per-user read transaction as nb_app through the pooler while the primary's server
// connections for nb_app are counted every 100 ms (on the primary, so the count takes no client slot
// of the pooler); alternated with the same transaction from as many clients as the pool has server
// connections, connected straight to the primary. Pool efficiency is the tps of the first over the
// second: what the application keeps of the server's throughput when a pooler multiplexes many
// clients onto few connections. Also reads the pooler's limits that decide it.
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { localContext } from "../local/context";
import { poolerDir, poolerPid } from "../local/pooler";
import { DIRECT_ROLE, benchUsers } from "./fixtures";
import { atPort, withClient } from "./db";
import { pgbench } from "./pgbench";
import { perUserScript } from "./perUserScript";
import { alternate, ratios, roundLabel, sampling, spread } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const MAX_SERVER_CONNECTIONS = 20;
const EFFICIENCY_GOAL = 0.8;

/** A clock on PgBouncer's CPU time: the returned function gives the share of one core it used since. */
function poolerCpu(stack: string): () => number {
  const pid = poolerPid(localContext(stack, () => undefined));
  const cpuSeconds = () => {
    if (!pid) return NaN;
    // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (USER_HZ, 100 on Linux).
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  };
  const start = { cpu: cpuSeconds(), at: process.hrtime.bigint() };
  return () => (cpuSeconds() - start.cpu) / (Number(process.hrtime.bigint() - start.at) / 1e9);
}

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
    // The pooled side runs a fixed number of transactions per client (about `seconds` of work at the
    // rate seen here): its 1,000 logins would otherwise eat into a fixed duration.
    const { clients, seconds, perClient } = sized(ctx, { quick: { clients: 50, seconds: 1, perClient: 20 }, full: { clients: 1000, seconds: 5, perClient: 20 } });
    const { users } = benchUsers(ctx);
    // BEGIN and set_user_context in one round trip, as client withUser sends them (its pipeline is
    // one message here: see perUserScript).
    const script = perUserScript(users, () => "neuralblitz.quantum_neurons", { begin: "compound" });
    const pooled = ctx.outputs.connections.app;
    // The same transport both ways (TCP and TLS verify-full, SCRAM), so the two differ by the pooler
    // alone: pg_hba.conf admits nb_app on the primary only over its Unix socket (the pooler's way
    // in), so the direct side logs in as a bench role that is a member of nb_app (its grants and
    // policies), dropped afterwards.
    const password = randomBytes(18).toString("base64url");
    const direct = new URL(atPort(pooled, ctx.outputs.primary.port));
    direct.username = DIRECT_ROLE;
    direct.password = password;
    const rounds: { maxServer: number; errors: number; tps: number; poolerCpu: number }[] = [];
    await withClient(ctx.outputs.connections.admin, (c) => c.query(`DROP ROLE IF EXISTS ${DIRECT_ROLE}; CREATE ROLE ${DIRECT_ROLE} LOGIN IN ROLE nb_app PASSWORD '${password}'`));
    let sides: Awaited<ReturnType<typeof alternate<number>>>;
    try {
      sides = await withClient(ctx.outputs.connections.admin, async (monitor) => {
        const serverConnections = async () =>
          Number((await monitor.query("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'nb_app' AND backend_type = 'client backend'")).rows[0].n);
        return alternate(
          ctx.rounds,
          {
            subject: async (round) => {
              ctx.note(`${clients} clients through PgBouncer, ${roundLabel(round, ctx.rounds)}`);
              const cpu = poolerCpu(ctx.stack);
              const { result, samples } = await sampling(100, serverConnections, () =>
                pgbench(ctx, { script, url: pooled, clients, seconds, transactionsPerClient: perClient }),
              );
              if (round >= 0) rounds.push({ maxServer: Math.max(...samples), errors: result.errors, tps: result.tps, poolerCpu: cpu() });
              return result.tps;
            },
            baseline: async (round) => {
              ctx.note(`${MAX_SERVER_CONNECTIONS} clients straight to the primary, ${roundLabel(round, ctx.rounds)}`);
              return (await pgbench(ctx, { script, url: direct.toString(), clients: MAX_SERVER_CONNECTIONS, seconds })).tps;
            },
          },
          { warmup: !ctx.quick },
        );
      });
    } finally {
      await withClient(ctx.outputs.connections.admin, (c) => c.query(`DROP ROLE IF EXISTS ${DIRECT_ROLE}`));
    }
    const value = spread(rounds.map((r) => r.maxServer));
    const errors = rounds.reduce((n, r) => n + r.errors, 0);
    const limits = poolerLimits(ctx.stack);
    const efficiency = ratios(sides.subject, sides.baseline);
    return [
      {
        id: "pooler.many_clients",
        title: `${clients} concurrent clients through the pooler`,
        against: "the pool's server connections on the primary, and client errors",
        goal: `≤ ${MAX_SERVER_CONNECTIONS} server connections, zero errors`,
        value,
        unit: "server connections (most seen in a round)",
        met: value.max <= MAX_SERVER_CONNECTIONS && errors === 0,
        method: `pgbench, ${clients} clients as nb_app through PgBouncer, ${perClient} transactions each per round, each transaction the per-user read of a random bench user; nb_app's backends on the primary counted every 100 ms.`,
        details: { clients, errors, tps: spread(rounds.map((r) => r.tps)) },
        evidence: [`pgbouncer: ${limits.settings}; its open-files limit is ${limits.openFiles}`],
      },
      {
        id: "pooler.efficiency",
        title: `pool efficiency: tps of ${clients} clients through the pooler on ≤ ${MAX_SERVER_CONNECTIONS} server connections`,
        against: `tps of ${MAX_SERVER_CONNECTIONS} clients connected straight to the primary (a member of nb_app, over TCP and TLS as the pooled side), same transaction`,
        goal: `≥ ${EFFICIENCY_GOAL}`,
        value: efficiency,
        unit: "× direct tps",
        met: efficiency.median >= EFFICIENCY_GOAL && value.max <= MAX_SERVER_CONNECTIONS && errors === 0,
        method:
          `pgbench, the per-user read transaction with withUser's round trips (BEGIN and set_user_context in one, as one simple-protocol message; then that user's neurons under RLS; END) of a random bench user, sides alternated after one untimed warm-up each: ` +
          `${clients} clients through PgBouncer (transaction mode), ${perClient} transactions each, against ${MAX_SERVER_CONNECTIONS} clients (the pool size) straight to the primary for ${seconds} s; tps without the initial connection time; ` +
          `both sides over TCP with TLS verify-full and SCRAM; PgBouncer's CPU time read from /proc during the pooled rounds.`,
        details: {
          pooledTps: spread(sides.subject),
          directTps: spread(sides.baseline),
          pooledClients: clients,
          directClients: MAX_SERVER_CONNECTIONS,
          poolerCoresUsed: spread(rounds.map((r) => r.poolerCpu)),
        },
        evidence: [
          `PgBouncer is one process (one core at most) on the same ${os.cpus().length} cores as the clients and the server: during the pooled rounds it used ${spread(rounds.map((r) => r.poolerCpu)).median.toFixed(2)} of a core (median)`,
        ],
      },
    ];
  },
};
