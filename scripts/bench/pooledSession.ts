// What the pooled-session design costs per transaction (docs/security.md), side by side in one run:
//  - session.user_context: naming the user for the transaction (set_user_context(), as client
//    withUser sends it) against the same transaction without it, on a bench copy without RLS whose
//    query names the user itself, so the two differ by the context alone;
//  - session.context: the transaction-bound user context (set_user_context() and the stamp check in
//    current_user_id()) against the previous design (set_config alone, an unbound current_user_id())
//    on a bench copy of the same rows, indexes and policy;
//  - session.reset_plain / session.reset_rls: the pooler's reset after every transaction
//    (server_reset_query = SESSION_RESET_SQL, server_reset_query_always = 1) against a second PgBouncer of
//    the same stack rendered identically except that it never resets, for a plain transaction and for
//    the rls.select transaction.
import * as fs from "fs";
import * as path from "path";
import { AUTH_USER } from "../../infra/topology/pgbouncerAuth";
import { renderPgbouncerAuthFile, renderPgbouncerIni } from "../../infra/topology/pgbouncerIni";
import { localContext } from "../local/context";
import { ensureServerDir } from "../local/postgresNode";
import { poolerConfig } from "../local/pooler";
import { loadState } from "../local/state";
import { chownToServer, freePort, processAlive, run, waitFor } from "../local/system";
import { atPort, withClient } from "./db";
import { BENCH_SCHEMA, benchUserIdSql, benchUsers } from "./fixtures";
import { PgbenchResult, pgbench } from "./pgbench";
import { PER_USER_SELECT, SET_USER_CONTEXT, perUserScript } from "./perUserScript";
import { alternate, ratios, roundLabel, spread } from "./runner";
import { BenchContext, Benchmark, Figure, sized } from "./types";

const CLIENTS = 4;
const UNBOUND = `${BENCH_SCHEMA}.neurons_unbound_context`;
const PLAIN = `${BENCH_SCHEMA}.neurons_plain`;
const RESET_ALWAYS = "server_reset_query_always = 1";
const USER_CONTEXT_GOAL = 0.95;

/** The previous design: nb.user_id set with set_config alone, read without a transaction stamp. */
const UNBOUND_SETUP = `
CREATE FUNCTION ${BENCH_SCHEMA}.unbound_user_id() RETURNS uuid LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  v text := pg_catalog.current_setting('nb.user_id', true);
BEGIN
  IF v IS NULL OR v = '' THEN
    RETURN NULL;
  END IF;
  IF v !~* '^\\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\\}?$' THEN
    RAISE EXCEPTION 'nb.user_id is not a uuid: "%"', v;
  END IF;
  RETURN v::uuid;
END
$$;
CREATE TABLE ${UNBOUND} (LIKE neuralblitz.quantum_neurons INCLUDING ALL);
INSERT INTO ${UNBOUND} SELECT * FROM neuralblitz.quantum_neurons WHERE user_id IN (SELECT id FROM neuralblitz.users WHERE username LIKE 'nbdb-bench-%');
ALTER TABLE ${UNBOUND} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON ${UNBOUND} FOR SELECT USING (user_id = (SELECT ${BENCH_SCHEMA}.unbound_user_id()));
CREATE TABLE ${PLAIN} (LIKE neuralblitz.quantum_neurons INCLUDING ALL);
INSERT INTO ${PLAIN} SELECT * FROM ${UNBOUND};
ANALYZE ${PLAIN};
GRANT USAGE ON SCHEMA ${BENCH_SCHEMA} TO nb_app;
GRANT SELECT ON ${UNBOUND}, ${PLAIN} TO nb_app;
GRANT EXECUTE ON FUNCTION ${BENCH_SCHEMA}.unbound_user_id() TO nb_app;
`;

function unboundScript(users: number): string {
  return [`\\set u random(1, ${users})`, "BEGIN;", `SELECT set_config('nb.user_id', (${benchUserIdSql(":u")})::text, true);`, `${PER_USER_SELECT} ${UNBOUND};`, "END;", ""].join("\n");
}

const PLAIN_SCRIPT = ["BEGIN;", "SELECT 1;", "END;", ""].join("\n");

/** A second PgBouncer of the stack, rendered like the stack's own but without the reset; stopped by the returned function. */
async function poolerWithoutReset(ctx: BenchContext): Promise<{ port: number; stop: () => Promise<void> }> {
  const local = localContext(ctx.stack, () => undefined);
  const state = loadState(ctx.stack)!;
  const dir = path.join(local.dir, "bench-pgbouncer");
  fs.rmSync(dir, { recursive: true, force: true });
  ensureServerDir(local, dir);
  const port = await freePort();
  const pidFile = path.join(dir, "pgbouncer.pid");
  // The stack's own config (TLS to clients and to the server included), on another port and files.
  const ini = renderPgbouncerIni(poolerConfig(local, state, { listenPort: port, authFile: path.join(dir, "userlist.txt"), logFile: path.join(dir, "pgbouncer.log"), pidFile }));
  if (!ini.includes(RESET_ALWAYS)) throw new Error(`the pooler config no longer has '${RESET_ALWAYS}': update this benchmark`);
  for (const [name, content] of [
    ["pgbouncer.ini", ini.replace(RESET_ALWAYS, "server_reset_query_always = 0")],
    ["userlist.txt", renderPgbouncerAuthFile(state.passwords[AUTH_USER])],
  ]) {
    fs.writeFileSync(path.join(dir, name), content, { mode: 0o600 });
    chownToServer(path.join(dir, name), local.user);
  }
  await run(local.bins.pgbouncer, ["-d", path.join(dir, "pgbouncer.ini")], { as: local.user });
  await waitFor("the bench's second pgbouncer", 15_000, async () => (fs.existsSync(pidFile) ? true : undefined));
  const stop = async () => {
    if (!fs.existsSync(pidFile)) return;
    const pid = Number(fs.readFileSync(pidFile, "utf8"));
    process.kill(pid, "SIGTERM");
    await waitFor("the bench's second pgbouncer to exit", 15_000, async () => (processAlive(pid, "pgbouncer") ? undefined : true));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { port, stop };
}

function statementMs(r: PgbenchResult, prefix: string): number {
  const line = r.statementMs.find((s) => s.text.startsWith(prefix));
  if (!line) throw new Error(`pgbench -r did not report the latency of '${prefix}':\n${r.output}`);
  return line.ms;
}

function selectMs(r: PgbenchResult): number {
  const line = r.statementMs.find((s) => s.text.startsWith(PER_USER_SELECT));
  if (!line) throw new Error(`pgbench -r did not report the SELECT's latency:\n${r.output}`);
  return line.ms;
}

export const pooledSession: Benchmark = {
  id: "session",
  title: "cost of the pooled-session design",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const seconds = sized(ctx, { quick: 1, full: 2 });
    const { users } = benchUsers(ctx);
    await withClient(ctx.outputs.connections.admin, (c) => c.query(UNBOUND_SETUP));
    const app = ctx.outputs.connections.app;
    const bench = (script: string, url: string, label: string, protocol?: "prepared") => async (round: number) => {
      ctx.note(`${label}, ${roundLabel(round, ctx.rounds)}`);
      return pgbench(ctx, { script, url, clients: CLIENTS, seconds, protocol });
    };
    // As drivers send it (withUser: a parameterized query, so the extended protocol), warmed first.
    const plainRead = (id: string) => `${PLAIN} WHERE user_id = ${id}`;
    const userContext = await alternate(
      ctx.rounds,
      {
        subject: bench(perUserScript(users, plainRead, { begin: "pipeline" }), app, "per-user read with the user context", "prepared"),
        baseline: bench(perUserScript(users, plainRead, { context: false }), app, "the same read without it", "prepared"),
      },
      { warmup: !ctx.quick },
    );
    const bound = perUserScript(users, () => "neuralblitz.quantum_neurons");
    const context = await alternate(ctx.rounds, {
      subject: bench(bound, app, "transaction-bound user context"),
      baseline: bench(unboundScript(users), app, "unbound user context (previous design)"),
    });
    const other = await poolerWithoutReset(ctx);
    let plain: Awaited<ReturnType<typeof alternate<PgbenchResult>>>;
    let rls: Awaited<ReturnType<typeof alternate<PgbenchResult>>>;
    try {
      const noReset = atPort(app, other.port);
      plain = await alternate(ctx.rounds, {
        subject: bench(PLAIN_SCRIPT, app, "plain transaction, pooler resets"),
        baseline: bench(PLAIN_SCRIPT, noReset, "plain transaction, pooler does not reset"),
      });
      rls = await alternate(ctx.rounds, {
        subject: bench(bound, app, "rls.select transaction, pooler resets"),
        baseline: bench(bound, noReset, "rls.select transaction, pooler does not reset"),
      });
    } finally {
      await other.stop();
    }
    const lat = (rs: PgbenchResult[]) => rs.map((r) => r.latencyMs);
    const method = (what: string) =>
      `pgbench through PgBouncer as nb_app, ${CLIENTS} clients, ${seconds} s per side per round, sides alternated; ${what}; figure = baseline transaction latency / design transaction latency.`;
    const contextValue = ratios(lat(context.baseline), lat(context.subject));
    const plainValue = ratios(lat(plain.baseline), lat(plain.subject));
    const rlsValue = ratios(lat(rls.baseline), lat(rls.subject));
    const userContextValue = ratios(lat(userContext.baseline), lat(userContext.subject));
    return [
      {
        id: "session.user_context",
        title: "per-transaction cost of the pooler-safe user context (set_user_context per transaction)",
        against: "the same transaction without it (the per-user read on a copy without RLS, the query naming the user)",
        goal: `≥ ${USER_CONTEXT_GOAL}`,
        value: userContextValue,
        unit: "× (latency without / latency with)",
        met: userContextValue.median >= USER_CONTEXT_GOAL,
        method:
          `pgbench -M prepared through PgBouncer as nb_app, ${CLIENTS} clients, ${seconds} s per side per round, one untimed warm-up each, sides alternated; ` +
          `BEGIN and SELECT neuralblitz.set_user_context(<user>) in one round trip as withUser sends them (client/beginAsUser.ts; pgbench \\startpipeline), the read of that user's ${benchUsers(ctx).neuronsPerUser} neurons, END; ` +
          `against BEGIN, the same read, END; figure = latency without / latency with.`,
        details: {
          withContextTransactionMs: spread(lat(userContext.subject)),
          withoutContextTransactionMs: spread(lat(userContext.baseline)),
          beginWithContextMs: spread(userContext.subject.map((r) => ["\\startpipeline", "BEGIN", SET_USER_CONTEXT, "\\endpipeline"].reduce((sum, p) => sum + statementMs(r, p), 0))),
          beginWithoutContextMs: spread(userContext.baseline.map((r) => statementMs(r, "BEGIN"))),
        },
        evidence: [],
      },
      {
        id: "session.context",
        title: "per-transaction cost of the transaction-bound user context (rls.select transaction)",
        against: "set_config alone and an unbound current_user_id() on the same rows, indexes and policy",
        goal: "≥ 0.9",
        value: contextValue,
        unit: "× (unbound latency / bound latency)",
        met: contextValue.median >= 0.9,
        method: method(`each transaction names a random one of ${users} bench users and reads that user's neurons`),
        details: {
          boundTransactionMs: spread(lat(context.subject)),
          unboundTransactionMs: spread(lat(context.baseline)),
          boundSelectMs: spread(context.subject.map(selectMs)),
          unboundSelectMs: spread(context.baseline.map(selectMs)),
        },
        evidence: [],
      },
      {
        id: "session.reset_plain",
        title: "per-transaction cost of the pooler's reset after every transaction, plain transaction",
        against: "a second PgBouncer rendered identically but with server_reset_query_always = 0",
        goal: "reported",
        value: plainValue,
        unit: "× (no-reset latency / reset latency)",
        met: null,
        method: method("BEGIN; SELECT 1; END"),
        details: { resetTransactionMs: spread(lat(plain.subject)), noResetTransactionMs: spread(lat(plain.baseline)), resetTps: spread(plain.subject.map((r) => r.tps)), noResetTps: spread(plain.baseline.map((r) => r.tps)) },
        evidence: [],
      },
      {
        id: "session.reset_rls",
        title: "per-transaction cost of the pooler's reset after every transaction, rls.select transaction",
        against: "a second PgBouncer rendered identically but with server_reset_query_always = 0",
        goal: "reported",
        value: rlsValue,
        unit: "× (no-reset latency / reset latency)",
        met: null,
        method: method("the rls.select transaction (set_user_context, per-user SELECT under RLS)"),
        details: { resetTransactionMs: spread(lat(rls.subject)), noResetTransactionMs: spread(lat(rls.baseline)), resetSelectMs: spread(rls.subject.map(selectMs)), noResetSelectMs: spread(rls.baseline.map(selectMs)) },
        evidence: [],
      },
    ];
  },
};
