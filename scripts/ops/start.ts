// `npm start`: the getting-started path in one command: the local stack up (bundles, grants,
// partitions), development data the first time, the schema verified, and a short summary.
import { withClient } from "../db";
import { TABLES } from "../../schema/tables";
import { StackStatus, status, up } from "../local/stack";
import * as path from "path";
import { LocalStackOutputs, caFile, outputsFile, stackDir } from "../local/state";
import { pgServiceFile, serviceName } from "../local/pgService";
import { AuditVerdict, verifyAuditTrail } from "./audit";
import { isSeeded, seed } from "./seed";
import { Drift, verifyStack } from "./verify";

export interface StartSummary {
  readonly outputs: LocalStackOutputs;
  readonly changes: string[];
  readonly seeded: boolean;
  readonly rowCounts: Record<string, number>;
  readonly drifts: Drift[];
  readonly status: StackStatus;
  readonly audit: AuditVerdict;
}

/**
 * Rows per table from the statistics system (live rows per partition, summed per table), read as
 * nb_migrator: the summary needs no superuser and runs no code of the schema's.
 */
async function rowCounts(migratorUrl: string): Promise<Record<string, number>> {
  return withClient(migratorUrl, async (client) => {
    const { rows } = await client.query(
      `SELECT t.name, coalesce(sum(s.n_live_tup), 0)::bigint AS n
         FROM pg_catalog.unnest($1::text[]) AS t(name)
         LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.schemaname = 'neuralblitz'
               AND (s.relname = t.name OR s.relid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                                                       WHERE i.inhparent = pg_catalog.to_regclass('neuralblitz.' || t.name)))
        GROUP BY t.name`,
      [TABLES.map((t) => t.name)],
    );
    const byName = new Map(rows.map((r) => [r.name as string, Number(r.n)]));
    return Object.fromEntries(TABLES.map((t) => [t.name, byName.get(t.name) ?? 0]));
  }, "nbdb-start");
}

export async function start(stack: string, log: (line: string) => void, progressTo: NodeJS.WriteStream | null = process.stderr): Promise<StartSummary> {
  const { outputs, changes } = await up({ stack, replicas: undefined, log });
  let seeded = false;
  if (!isSeeded(stack)) {
    log("loading development data (first start): nbdb seed --scale 1");
    await seed({ stack, scale: 1, seed: 1, progressTo });
    seeded = true;
  }
  const [drifts, rows, st, audit] = await Promise.all([
    verifyStack(stack),
    rowCounts(outputs.connections.migrator),
    status(stack),
    verifyAuditTrail(outputs.connections.auditor),
  ]);
  return { outputs, changes, seeded, rowCounts: rows, drifts, status: st, audit };
}

export function printStartSummary(s: StartSummary, print: (line: string) => void = console.log): void {
  const o = s.outputs;
  print(`NeuralBlitz local stack '${o.stack}' is up${s.changes.length ? ` (${s.changes.length} changes)` : " (nothing to change)"}${s.seeded ? ", seeded" : ""}.`);
  print(`  primary  ${o.primary.host}:${o.primary.port}    pooler ${o.pooler.host}:${o.pooler.port} (${o.pooler.poolMode})`);
  for (const n of s.status.nodes.filter((x) => x.role === "replica")) {
    print(`  ${n.node} ${o.primary.host}:${n.port}  ${n.streaming ? "streaming" : "NOT STREAMING"}, lag ${n.lagBytes ?? "-"} bytes / ${n.lagSeconds?.toFixed(3) ?? "-"} s`);
  }
  print(`  rows: ${Object.entries(s.rowCounts).map(([t, n]) => `${t} ${n}`).join(", ")}`);
  print(s.drifts.length === 0 ? "  schema: verified, no drift" : `  schema: ${s.drifts.length} drift(s): run npx nbdb verify for what to do`);
  print(
    s.audit.broken.length === 0
      ? `  audit chain: intact, ${s.audit.entries} entries`
      : `  audit chain: BROKEN at ${s.audit.broken.length} entries: run npx nbdb audit verify`,
  );
  print(`  connection strings: ${outputsFile(o.stack)} (mode 0600); data key: dataKey in ${path.join(stackDir(o.stack), "state.json")}`);
  print(`  psql: PGSERVICEFILE=${pgServiceFile(o.stack)} psql service=${serviceName(o.stack, "app")} (also -migrator, -readonly, -auditor, -admin)`);
  print(`  TLS: every hop, verify-full against the stack's CA ${caFile(o.stack)}`);
}


