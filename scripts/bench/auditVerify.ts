// Audit chain verification speed over a bench copy of the trail (the real one is append-only and
// belongs to the stack): ≥ 1M entries sealed exactly as the sealer seals them
// (sha256(prev_hash || neuralblitz.golden_dag_canonical(...)), the canonical form made by the real
// function), verified by the real verify_golden_dag() re-created with its table names pointed at
// the copy: its query, run the way it runs it (PL/pgSQL RETURN QUERY EXECUTE) with its SET clauses
// (which choose the plan: parallel merge joins, no JIT). That the copy verifies with zero broken
// entries shows both are faithful. Then the
// incremental verification (`nbdb audit verify --since-head`): the head recorded NEW_ENTRIES entries
// before the end, and the query verify_golden_dag_since() runs, pointed at the copy the same way.
import { createHash } from "crypto";
import { Transform } from "stream";
import { pipeline } from "stream/promises";
import { Client } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { BENCH_SCHEMA, benchNeuronIdSql, benchUserIdSql } from "./fixtures";
import { withClient } from "./db";
import { roundLabel, spread, timed } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const TABLES = ["golden_dag_audit", "golden_dag_seals", "golden_dag_head", "golden_dag_archives"];
const GENESIS_HASH = Buffer.alloc(32);
const FULL_GOAL = 300_000;
/** Entries appended since the recorded head, for the incremental verification, and its goal. */
const NEW_ENTRIES = 10_000;
const SINCE_GOAL_MS = 100;
const CONTENT = "id, recorded_at, table_name, operation, row_pk, db_role, app_user_id, old_values, new_values";

/** N entries of the kind an application's neuron updates leave. */
function entriesSql(n: number): string {
  return `SELECT g AS id, timestamptz '2100-01-01' + g * interval '1 millisecond' AS recorded_at,
                 'quantum_neurons' AS table_name, 'UPDATE' AS operation,
                 jsonb_build_object('id', ${benchNeuronIdSql("1 + g % 1000")}) AS row_pk, 'nb_app' AS db_role,
                 ${benchUserIdSql("1 + g % 100")} AS app_user_id,
                 jsonb_build_object('amplitude', random()) AS old_values, jsonb_build_object('amplitude', random()) AS new_values
            FROM generate_series(1, ${n}) AS g`;
}

/** Each entry with its predecessor and its canonical bytes (hex), in chain order, for the linker. */
function canonicalSql(): string {
  return `SELECT id, nullif(id - 1, 0) AS prev_id,
                 encode(neuralblitz.golden_dag_canonical(${CONTENT}, nullif(id - 1, 0)), 'hex')
            FROM ${BENCH_SCHEMA}.golden_dag_audit ORDER BY id`;
}

/** Turns "id, prev_id, canonical bytes" lines into seals: prev_hash and entry_hash chained in order, as the sealer does. */
function chainLinker(): Transform & { last: Buffer } {
  let pending = "";
  const linker = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const lines = (pending + chunk.toString("utf8")).split("\n");
      pending = lines.pop()!;
      let out = "";
      for (const line of lines) {
        const cut = line.lastIndexOf("\t");
        const hash = createHash("sha256").update(linker.last).update(Buffer.from(line.slice(cut + 1), "hex")).digest();
        out += `${line.slice(0, cut)}\t\\\\x${linker.last.toString("hex")}\t\\\\x${hash.toString("hex")}\t2100-01-01\n`;
        linker.last = hash;
      }
      done(null, out);
    },
  }) as Transform & { last: Buffer };
  linker.last = GENESIS_HASH;
  return linker;
}

async function buildCopy(ctx: BenchContext, entries: number): Promise<void> {
  const url = ctx.outputs.connections.admin;
  await withClient(url, async (c) => {
    await c.query(`CREATE TABLE ${BENCH_SCHEMA}.golden_dag_audit (LIKE neuralblitz.golden_dag_audit INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES) PARTITION BY RANGE (recorded_at)`);
    await c.query(`CREATE TABLE ${BENCH_SCHEMA}.golden_dag_audit_default PARTITION OF ${BENCH_SCHEMA}.golden_dag_audit DEFAULT`);
    for (const table of TABLES.slice(1)) await c.query(`CREATE TABLE ${BENCH_SCHEMA}.${table} (LIKE neuralblitz.${table} INCLUDING ALL)`);
    await c.query(`INSERT INTO ${BENCH_SCHEMA}.golden_dag_audit (${CONTENT}) OVERRIDING SYSTEM VALUE ${entriesSql(entries)}`);
    await withClient(url, async (reader) => {
      const linker = chainLinker();
      await pipeline(
        reader.query(copyTo(`COPY (${canonicalSql()}) TO STDOUT`)),
        linker,
        c.query(copyFrom(`COPY ${BENCH_SCHEMA}.golden_dag_seals (entry_id, prev_id, prev_hash, entry_hash, committed_at) FROM STDIN`)),
      );
      await c.query(`INSERT INTO ${BENCH_SCHEMA}.golden_dag_head (last_id, last_hash) VALUES ($1, $2)`, [entries, linker.last]);
    });
    await c.query(`VACUUM (ANALYZE) ${BENCH_SCHEMA}.golden_dag_audit, ${BENCH_SCHEMA}.golden_dag_seals`);
  });
}

/** The query text an installed function makes (golden_dag_verify_sql() ...), with its table names pointed at the copy. */
async function queryOverCopy(c: Client, maker: string, verifier: string): Promise<string> {
  // Over the trail alone (the copy has no archived partitions): the source verify_golden_dag() starts from.
  let copy: string = (await c.query(`SELECT neuralblitz.${maker}($1) AS q`, [`SELECT ${CONTENT} FROM neuralblitz.golden_dag_audit`])).rows[0].q;
  for (const table of TABLES.filter((t) => t !== "golden_dag_archives")) {
    const real = new RegExp(`neuralblitz\\.${table}\\b`, "g");
    if (!real.test(copy)) throw new Error(`${verifier} no longer reads neuralblitz.${table}: update the audit benchmark to match it`);
    copy = copy.replace(real, `${BENCH_SCHEMA}.${table}`);
  }
  return copy;
}

/** The settings the installed verify_golden_dag() runs with (its SET clauses), but search_path: the copy's names are qualified. */
async function verifierSettings(c: Client): Promise<{ name: string; value: string }[]> {
  const rows = await c.query(
    `SELECT split_part(cfg, '=', 1) AS name, substr(cfg, strpos(cfg, '=') + 1) AS value
       FROM pg_proc p, unnest(p.proconfig) AS cfg
      WHERE p.oid = 'neuralblitz.verify_golden_dag()'::regprocedure AND cfg NOT LIKE 'search_path=%'`,
  );
  return rows.rows;
}

/**
 * verify_golden_dag() as installed, re-created in the bench schema over the copy: the same query
 * (neuralblitz.golden_dag_verify_sql()), run the same way (PL/pgSQL RETURN QUERY EXECUTE, which may
 * run it in parallel) with the same SET clauses. Returns the query and those settings.
 */
async function verifierOverCopy(c: Client): Promise<{ body: string; settings: { name: string; value: string }[] }> {
  const body = await queryOverCopy(c, "golden_dag_verify_sql", "verify_golden_dag()");
  const settings = await verifierSettings(c);
  const setClauses = settings.map((s) => `SET ${s.name} = '${s.value.replace(/'/g, "''")}'`).join(" ");
  await c.query(
    `CREATE FUNCTION ${BENCH_SCHEMA}.verify_golden_dag() RETURNS TABLE (id bigint, reason text) LANGUAGE plpgsql STABLE ${setClauses}
       AS $body$BEGIN RETURN QUERY EXECUTE $verify$${body}$verify$; END$body$`,
  );
  return { body, settings };
}

/** EXPLAIN (ANALYZE) of a query under the given settings (SET LOCAL, as a function's SET clauses apply them). */
async function explainWith(c: Client, sql: string, params: unknown[], settings: { name: string; value: string }[]): Promise<Explained> {
  await c.query("BEGIN");
  try {
    for (const s of settings) await c.query("SELECT set_config($1, $2, true)", [s.name, s.value]);
    return (await c.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params)).rows[0]["QUERY PLAN"][0];
  } finally {
    await c.query("ROLLBACK");
  }
}

interface PlanNode {
  "Node Type": string;
  "Subplan Name"?: string;
  "Workers Launched"?: number;
  "Actual Total Time": number;
  Plans?: PlanNode[];
}

interface Explained {
  Plan: PlanNode;
  "Execution Time": number;
}

function findSubplan(node: PlanNode, name: string): PlanNode | undefined {
  if (node["Subplan Name"] === name) return node;
  for (const child of node.Plans ?? []) {
    const found = findSubplan(child, name);
    if (found) return found;
  }
  return undefined;
}

/** The most parallel workers launched under one Gather of the plan. */
function countWorkers(node: PlanNode): number {
  return Math.max(node["Workers Launched"] ?? 0, ...(node.Plans ?? []).map(countWorkers));
}

/** The first of the query's checks (the first branch of its UNION ALL): each sealed entry against its seal. */
function firstCheck(node: PlanNode): PlanNode | undefined {
  if (node["Node Type"] === "Append") return node.Plans?.[0];
  for (const child of node.Plans ?? []) {
    const found = firstCheck(child);
    if (found) return found;
  }
  return undefined;
}

export const auditVerify: Benchmark = {
  id: "audit-verify",
  title: "audit chain verification",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const chain = sized(ctx, { quick: 20_000, full: 1_000_000 });
    const appended = sized(ctx, { quick: 1_000, full: NEW_ENTRIES });
    const entries = chain + appended;
    ctx.note(`building a ${entries}-entry copy of the audit chain`);
    await buildCopy(ctx, entries);
    return withClient(ctx.outputs.connections.admin, async (c): Promise<Figure[]> => {
      const { body, settings } = await verifierOverCopy(c);
      const broken = Number((await c.query(`SELECT count(*) AS n FROM ${BENCH_SCHEMA}.verify_golden_dag()`)).rows[0].n);
      if (broken !== 0) throw new Error(`the bench copy of the audit chain fails verification (${broken} broken entries): its hashing no longer matches golden_dag_append()`);
      const rates: number[] = [];
      for (let round = 0; round < ctx.rounds; round++) {
        ctx.note(`verifying ${entries} entries, round ${round + 1}/${ctx.rounds}`);
        rates.push(entries / ((await timed(() => c.query(`SELECT count(*) FROM ${BENCH_SCHEMA}.verify_golden_dag()`))) / 1000));
      }
      const explained = await explainWith(c, body, [], settings);
      const hashing = firstCheck(explained.Plan);
      const workers = countWorkers(explained.Plan);
      const value = spread(rates);
      // Incremental: the head an earlier verification printed, `appended` entries before the end.
      const sinceSql = await queryOverCopy(c, "golden_dag_verify_since_sql", "verify_golden_dag_since()");
      const recorded = (await c.query(`SELECT entry_id, entry_hash FROM ${BENCH_SCHEMA}.golden_dag_seals WHERE entry_id = $1`, [chain])).rows[0];
      const verifySince = async () => {
        // As verify_golden_dag_since() does: the recorded entry still holds its hash, then the walk.
        const held = await c.query(`SELECT entry_hash = $2 AS same FROM ${BENCH_SCHEMA}.golden_dag_seals WHERE entry_id = $1`, [recorded.entry_id, recorded.entry_hash]);
        if (held.rows[0]?.same !== true) throw new Error("the bench copy no longer holds its recorded head");
        return (await c.query(sinceSql, [recorded.entry_id])).rows;
      };
      const sinceBroken = await verifySince();
      if (sinceBroken.length !== 0) throw new Error(`the bench copy fails incremental verification: ${JSON.stringify(sinceBroken.slice(0, 3))}`);
      const sinceMs: number[] = [];
      for (let round = 0; round < ctx.rounds; round++) {
        ctx.note(`verifying the ${appended} entries since a recorded head, ${roundLabel(round, ctx.rounds)}`);
        sinceMs.push(await timed(verifySince));
      }
      const since = spread(sinceMs);
      const sinceExplained: Explained = (await c.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sinceSql}`, [recorded.entry_id])).rows[0]["QUERY PLAN"][0];
      const walk = findSubplan(sinceExplained.Plan, "CTE walked");
      const sinceHashing = firstCheck(sinceExplained.Plan);
      return [
        {
          id: "audit.verify",
          title: `audit chain verification (${entries.toLocaleString("en")} entries)`,
          against: "entries per second over the whole chain",
          goal: `≥ ${FULL_GOAL.toLocaleString("en")} entries/s`,
          value,
          unit: "entries/s",
          met: value.median >= FULL_GOAL,
          method:
            "verify_golden_dag() as installed (its query, run by RETURN QUERY EXECUTE under its SET clauses), re-created over a bench copy of the trail whose hashes were computed exactly as the trigger's; " +
            "one call per round (wall time, superuser, primary); the copy verifies with 0 broken entries.",
          details: { entries, secondsPerRun: spread(rates.map((r) => entries / r)) },
          evidence: hashing
            ? [
                `EXPLAIN ANALYZE of its body under the function's settings (${settings.map((s) => `${s.name}=${s.value}`).join(", ")}): ${Math.round(explained["Execution Time"])} ms in all, ` +
                  `of which ${Math.round(hashing["Actual Total Time"])} ms merging each seal with its entry and recomputing its hash (the first check${workers > 0 ? `, with up to ${workers} parallel worker${workers > 1 ? "s" : ""} beside the leader per check` : ", in one process"}); ` +
                  "the rest is the unsealed-entry, link, beginning, head and unaudited-window checks",
              ]
            : [],
        },
        {
          id: "audit.verify_since",
          title: `incremental audit verification: ${appended.toLocaleString("en")} new entries since a recorded head on a ${chain.toLocaleString("en")}-entry chain`,
          against: "wall time of one verification (nbdb audit verify --since-head)",
          goal: `< ${SINCE_GOAL_MS} ms`,
          value: since,
          unit: "ms",
          met: since.median < SINCE_GOAL_MS,
          method:
            `the head recorded at entry ${chain.toLocaleString("en")}, then the query verify_golden_dag_since() runs (neuralblitz.golden_dag_verify_since_sql(), pointed at the same bench copy) with the recorded entry's hash checked first; ` +
            "one call per round after an untimed first one (wall time, superuser, primary); 0 broken entries.",
          details: { chainEntries: chain, newEntries: appended, queryExecutionMs: Math.round(sinceExplained["Execution Time"] * 10) / 10 },
          evidence:
            walk && sinceHashing
              ? [
                  `EXPLAIN ANALYZE: ${Math.round(sinceExplained["Execution Time"])} ms in all; the walk along the seals from the recorded head ${Math.round(walk["Actual Total Time"])} ms (CTE walked), ` +
                    `up to the end of reading and rehashing those entries ${Math.round(sinceHashing["Actual Total Time"])} ms (its first check, the walk and the entries' id range included); the rest is the link, head and unsealed-entry checks`,
                ]
              : [],
        },
      ];
    });
  },
};
