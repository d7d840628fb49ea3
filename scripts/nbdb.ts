// The `nbdb` command line. Each command is a thin layer over a module that tests call directly.
import { Command, InvalidArgumentError } from "commander";
import Table from "cli-table3";
import { planDeploy } from "../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../infra/bundles/catalog";
import { PlanEntry } from "../infra/bundles/plan";
import { BENCHMARKS, BENCH_STACK, runBench } from "./bench";
import { parseReplicaCount } from "./local/context";
import { UserError } from "./local/errors";
import { parseRecordedHead, verifyAuditTrail } from "./ops/audit";
import { backup, listBackups, parseBackupType, restore } from "./ops/backup";
import { grantsDiff } from "./ops/grantsDiff";
import { maintain } from "./ops/maintain";
import { newMigration } from "./ops/migration";
import { reset } from "./ops/reset";
import { parseScale, seed } from "./ops/seed";
import { printStartSummary, start } from "./ops/start";
import { regenerateVerifySql, verifyStack } from "./ops/verify";
import { StackStatus, down, status, up } from "./local/stack";
import { PGBOUNCER_EXPORTER_VERSION, SERVER_PACKAGES, TEST_PACKAGES, ensureSystem, ensureTestSystem } from "./local/setup";
import { findBinaries } from "./local/system";
import { PGBOUNCER_VERSION } from "../infra/topology/pgbouncerVersion";
import { outputsFile, readOutputs, validateStackName } from "./local/state";
import { pgServiceFile } from "./local/pgService";

const log = (line: string) => process.stderr.write(`nbdb: ${line}\n`);

function stackOption(value: string): string {
  try {
    return validateStackName(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function replicasOption(value: string): number {
  try {
    return parseReplicaCount(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function fmt(v: number | null, digits = 0): string {
  return v === null ? "-" : v.toFixed(digits);
}

// Colours only on a terminal; piped output stays plain text.
const tableStyle = process.stdout.isTTY ? {} : { style: { head: [], border: [] } };

function printStatus(s: StackStatus): void {
  const nodes = new Table({ ...tableStyle, head: ["node", "role", "port", "pid", "running", "streaming", "lag bytes", "lag s"] });
  for (const n of s.nodes) {
    nodes.push([n.node, n.role, n.port, n.pid ?? "-", n.running ? "yes" : "NO", n.streaming === null ? "-" : n.streaming ? "yes" : "NO", fmt(n.lagBytes), fmt(n.lagSeconds, 3)]);
  }
  console.log(`stack ${s.stack}`);
  console.log(nodes.toString());
  const pooler = new Table({ ...tableStyle, head: ["pooler", "version", "port", "pid", "running", "database", "user", "clients active", "clients waiting", "servers active", "servers idle"] });
  const base = ["pgbouncer", s.pooler.version, s.pooler.port, s.pooler.pid ?? "-", s.pooler.running ? "yes" : "NO"];
  if (s.pooler.pools.length === 0) pooler.push([...base, "-", "-", "-", "-", "-", "-"]);
  for (const p of s.pooler.pools) pooler.push([...base, p.database, p.user, p.clientsActive, p.clientsWaiting, p.serversActive, p.serversIdle]);
  console.log(pooler.toString());
  for (const e of s.monitoring) console.log(`${e.name} ${e.running ? "running" : "NOT running"}: ${e.url}`);
  const m = s.maintenance;
  if (m) {
    const last = m.lastRun
      ? `last ran ${m.lastRun.finishedAt} (${m.lastRun.source}): ${m.lastRun.partitionsCreated} partitions created, ${m.lastRun.partitionsRetired} retired, ${m.lastRun.rowsMoved} rows moved`
      : "has not run yet (npx nbdb maintain)";
    console.log(`maintenance ${m.scheduled ? "scheduled hourly by pg_cron" : "not scheduled (no pg_cron on this server)"}; ${last}`);
  }
  const b = s.backup;
  if (b && !b.archiving) console.log("WAL archiving off (install pgbackrest, then nbdb up and restart the primary as it says): no point-in-time restore");
  else if (b) {
    const last = b.lastArchivedAt ? `last ${b.lastArchivedWal} at ${b.lastArchivedAt}` : "nothing archived yet";
    const failing = b.failing ? `; FAILING since ${b.lastFailedAt} (${b.failedCount} failures, WAL piles up in pg_wal: check the repository and log/pgbackrest/)` : "";
    console.log(`WAL archiving ${b.failing ? "FAILING" : "ok"}: ${last}; ${b.walWaiting} segment(s) waiting${failing}`);
  }
  for (const p of s.problems) console.log(`PROBLEM: ${p}`);
  if (s.problems.length > 0) console.log(`npx nbdb up --stack ${s.stack} repairs the stack.`);
}

function printPlan(stack: string, plan: readonly PlanEntry[]): void {
  const actionable = plan.filter((e) => e.status !== "unchanged");
  if (actionable.length === 0) {
    console.log(`stack ${stack}: all ${plan.length} bundles are applied; nbdb up would apply nothing.`);
    return;
  }
  const table = new Table({ ...tableStyle, head: ["bundle", "kind", "status", "file"] });
  for (const e of actionable) table.push([e.bundle.name, e.bundle.kind, e.status, e.bundle.file]);
  console.log(`stack ${stack}: what nbdb up would do`);
  console.log(table.toString());
  for (const e of actionable) if (e.reason) console.log(`refused: ${e.reason}`);
}

export function program(): Command {
  const cli = new Command("nbdb")
    .description("NeuralBlitz PostgreSQL platform: the local stack (primary, streaming replicas, PgBouncer) and its operations.")
    .showHelpAfterError("(run with --help for usage)")
    // Usage errors exit with 2 like every other error; --help and --version with 0.
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

  cli
    .command("up")
    .description("create or converge a local stack: primary, streaming replicas and PgBouncer (idempotent)")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--replicas <n>", "number of streaming replicas (default: 2 for a new stack, the current count for an existing one)", replicasOption)
    .option("--bundles <dir>", "directory of SQL bundles to apply", REPO_BUNDLE_DIR)
    .option("--renew-tls", "issue a new CA and new certificates for every server now (e.g. after a key leaked); the CA file keeps its path")
    .action(async (o: { stack: string; replicas?: number; bundles: string; renewTls?: boolean }) => {
      const res = await up({ stack: o.stack, replicas: o.replicas, bundles: o.bundles, renewTls: o.renewTls, log });
      if (res.changes.length === 0) console.log(`stack ${o.stack} is up to date: nothing changed.`);
      else for (const c of res.changes) console.log(`- ${c}`);
      const out = res.outputs;
      console.log(`primary   ${out.primary.host}:${out.primary.port}`);
      out.replicas.forEach((r, i) => console.log(`replica-${i} ${r.host}:${r.port}`));
      console.log(`pooler    ${out.pooler.host}:${out.pooler.port} (${out.pooler.poolMode} pooling)`);
      console.log(`connection strings (with passwords): ${outputsFile(o.stack)}`);
      if (out.tls) console.log(`TLS: verify-full against the stack's CA ${out.tls.caFile}`);
    });

  cli
    .command("setup")
    .description(`install what the local stack needs on this machine (root, Debian/Ubuntu): ${SERVER_PACKAGES.join(", ")} and PgBouncer ${PGBOUNCER_VERSION} built from Debian 13's source package; skips what is there`)
    .option("--for-tests", `also what the test suite needs: ${TEST_PACKAGES.join(", ")}, and PgBouncer's exporter (prometheus-pgbouncer-exporter ${PGBOUNCER_EXPORTER_VERSION}, pinned, in a virtual environment)`)
    .action(async (o: { forTests?: boolean }) => {
      const r = o.forTests ? await ensureTestSystem(log) : await ensureSystem(log);
      console.log(r.installed.length ? `installed: ${r.installed.join(", ")}` : "everything the local stack needs is installed.");
      console.log(`PgBouncer: ${findBinaries().pgbouncer} (${findBinaries().pgbouncerVersion})`);
    });

  cli
    .command("start")
    .description("the getting-started path (npm start): up, seed the first time, verify, and a summary of the stack")
    .option("--stack <name>", "stack name", stackOption, "local")
    .action(async (o: { stack: string }) => {
      const summary = await start(o.stack, log);
      printStartSummary(summary);
      if (summary.drifts.length > 0 || summary.audit.broken.length > 0) process.exitCode = 1;
    });

  cli
    .command("down")
    .description("stop every process of a stack and keep its data (--purge --yes deletes it)")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--purge", "also delete the stack's directory and all its data")
    .option("--yes", "confirm --purge")
    .action(async (o: { stack: string; purge?: boolean; yes?: boolean }) => {
      await down({ stack: o.stack, purge: o.purge, yes: o.yes, log });
      console.log(o.purge ? `stack ${o.stack} stopped and deleted.` : `stack ${o.stack} stopped; its data is kept (npx nbdb up --stack ${o.stack} brings it back).`);
    });

  cli
    .command("reset")
    .description("rebuild a local stack from nothing: down, purge (all its data), up with the same replica count, seed. Refused for a production stack")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--yes", "confirm deleting all of the stack's data")
    .option("--scale <s>", "seed data volume (as nbdb seed)", "1")
    .action(async (o: { stack: string; yes?: boolean; scale: string }) => {
      const r = await reset({ stack: o.stack, yes: o.yes, scale: parseScale(o.scale), log });
      console.log(`stack ${o.stack} reset: ${r.replicas} replica(s), ${r.seededRows} seed rows; new passwords in ${outputsFile(o.stack)} and ${pgServiceFile(o.stack)}.`);
    });

  cli
    .command("status")
    .description("show each node (role, port, pid, running, streaming, replication lag), the pooler's pools and the metrics exporters' URLs (PostgreSQL's, PgBouncer's); exit code 1 when a node, the pooler or an exporter is down or a replica is not streaming")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--json", "print JSON for machines")
    .action(async (o: { stack: string; json?: boolean }) => {
      const s = await status(o.stack);
      if (o.json) console.log(JSON.stringify(s, null, 2));
      else printStatus(s);
      if (s.problems.length > 0) process.exitCode = 1;
    });

  cli
    .command("plan")
    .description("list the SQL bundles nbdb up would apply (new, changed repeatable) or refuse (edited migration); changes nothing. Exit code 1 if any is refused")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--bundles <dir>", "directory of SQL bundles", REPO_BUNDLE_DIR)
    .option("--json", "print JSON for machines")
    .action(async (o: { stack: string; bundles: string; json?: boolean }) => {
      const plan = await planDeploy({ url: readOutputs(o.stack).connections.migrator }, loadCatalog(o.bundles));
      if (o.json) {
        const entries = plan.map(({ bundle, status, appliedChecksum, reason }) => ({ name: bundle.name, kind: bundle.kind, file: bundle.file, status, checksum: bundle.checksum, appliedChecksum, reason }));
        console.log(JSON.stringify({ stack: o.stack, bundles: entries }, null, 2));
      } else printPlan(o.stack, plan);
      if (plan.some((e) => e.status === "refused")) process.exitCode = 1;
    });

  cli
    .command("seed")
    .description("load deterministic development data into every table (replaces earlier seed data, never duplicates it)")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--scale <s>", "data volume: 1 loads in seconds, 100 loads millions of metric rows", "1")
    .option("--seed <n>", "random seed: the same seed (and day) gives the same data", "1")
    .option("--as-of <date>", "the day the data ends, YYYY-MM-DD (default: today, UTC)")
    .option("--production-stack <name>", "required, equal to --stack, to seed a stack marked as production")
    .action(async (o: { stack: string; scale: string; seed: string; asOf?: string; productionStack?: string }) => {
      const seedNumber = Number(o.seed);
      if (!Number.isInteger(seedNumber) || seedNumber < 0) throw new UserError(`--seed must be a whole number, got '${o.seed}'.`);
      const asOf = o.asOf === undefined ? undefined : new Date(`${o.asOf}T00:00:00Z`);
      if (asOf && Number.isNaN(asOf.getTime())) throw new UserError(`--as-of must be a date like 2026-11-26, got '${o.asOf}'.`);
      if (asOf && asOf.getTime() > Date.now()) throw new UserError(`--as-of ${o.asOf} is in the future: seed data ends today at the latest.`);
      const report = await seed({ stack: o.stack, scale: parseScale(o.scale), seed: seedNumber, asOf, productionStack: o.productionStack });
      const total = Object.values(report.rows).reduce((a, b) => a + b, 0);
      console.log(`seeded ${total} rows in ${(report.durationMs / 1000).toFixed(1)} s (tables analyzed)`);
    });

  cli
    .command("maintain")
    .description("partitions ahead and retention, strays moved, roll-ups refreshed, changed partitions analyzed; reports bloated indexes")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--reindex", "also run the REINDEX CONCURRENTLY the bloat report proposes")
    .option("--json", "print JSON for machines")
    .action(async (o: { stack: string; reindex?: boolean; json?: boolean }) => {
      const r = await maintain(readOutputs(o.stack).connections.migrator, { reindex: o.reindex });
      if (o.json) return void console.log(JSON.stringify(r, null, 2));
      console.log(`partitions: ${r.partitionsCreated} created, ${r.partitionsRetired} retired; ${r.rowsMoved} rows moved out of default partitions`);
      console.log(`roll-ups refreshed; analyzed: ${r.analyzed.length ? r.analyzed.join(", ") : "nothing changed enough"}`);
      if (r.droppedLeftovers.length) console.log(`dropped leftovers of an interrupted REINDEX: ${r.droppedLeftovers.join(", ")}`);
      if (r.bloated.length === 0) console.log("no bloated index (estimated free space below 30% or index under 1 MB)");
      for (const b of r.bloated) {
        const done = r.reindexed.includes(b.index) ? "reindexed" : "would run";
        console.log(`bloat ${(b.bloat * 100).toFixed(0)}% of ${(b.bytes / 1048576).toFixed(1)} MB in ${b.index}: ${done} ${b.reindex}`);
      }
    });

  cli
    .command("verify")
    .description("check the live database against sql/, the privilege model and the ledger (same verdict as psql -f sql/verify_schema.sql); exit code 1 on any drift")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--json", "print JSON for machines")
    .option("--regenerate", "rebuild sql/verify_schema.sql from a throwaway stack built from sql/ (after changing bundles or the model)")
    .action(async (o: { stack: string; json?: boolean; regenerate?: boolean }) => {
      if (o.regenerate) return void console.log(`wrote ${await regenerateVerifySql(log)}`);
      const drifts = await verifyStack(o.stack);
      if (o.json) console.log(JSON.stringify({ stack: o.stack, drifts }, null, 2));
      else if (drifts.length === 0) console.log(`stack ${o.stack}: schema verified, no drift`);
      else {
        console.log(`stack ${o.stack}: ${drifts.length} drift(s)`);
        for (const d of drifts) {
          const is = d.problem === "changed" && d.actual && d.actual.length <= 80 && !d.actual.includes("\n") ? ` (is: ${d.actual})` : "";
          console.log(`- ${d.kind} ${d.name}: ${d.problem}${is}\n    fix: ${d.fix}`);
        }
      }
      if (drifts.length > 0) process.exitCode = 1;
    });

  cli
    .command("grants")
    .description("the privilege model (schema/privileges.ts)")
    .command("diff")
    .description(
      "the privileges granted and revoked per role and object, working tree against a git revision, as a markdown table for a pull-request comment. " +
        "Exit code 0 when nothing changed, 1 when privileges changed, 2 on error",
    )
    .requiredOption("--base <git-ref>", "the revision to compare with, e.g. origin/main")
    // Usage errors too must exit with 2, since 1 means "privileges changed".
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
    .action((o: { base: string }) => {
      const diff = grantsDiff(o.base);
      console.log(diff.markdown);
      if (diff.changes.length > 0) process.exitCode = 1;
    });

  cli
    .command("migration")
    .description("SQL migrations (sql/migrations/)")
    .command("new")
    .description("write sql/migrations/V<next>__<name>.sql: the next free version and the header comment to fill in; never overwrites")
    .argument("<name>", "what the migration does, lower-case snake_case (e.g. add_metric_labels)")
    .option("--dir <dir>", "another bundle directory (holding migrations/ and repeatable/)", REPO_BUNDLE_DIR)
    .action((name: string, o: { dir: string }) => {
      const m = newMigration(name, o.dir);
      console.log(`wrote ${m.file} (version ${m.version}): fill in its header and SQL, then npx nbdb plan lists it as new.`);
    });

  const audit = cli.command("audit").description("the GoldenDAG audit trail");
  audit
    .command("verify")
    .description("check every link of the audit chain (as nb_auditor); exit code 1 when any entry is broken")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--expect-head <id:hash>", "a head printed by an earlier run: also check the chain still holds it (not rewritten since)")
    .option("--json", "print JSON for machines")
    .action(async (o: { stack: string; json?: boolean; expectHead?: string }) => {
      const verdict = await verifyAuditTrail(readOutputs(o.stack).connections.auditor, o.expectHead ? parseRecordedHead(o.expectHead) : undefined);
      if (o.json) console.log(JSON.stringify(verdict, null, 2));
      else if (verdict.broken.length === 0) {
        console.log(`audit chain intact: ${verdict.entries - verdict.unsealed} entries chained (${verdict.unsealed} committing now); head ${verdict.head.id ?? 0}:${verdict.head.hash}`);
        console.log("Keep the head outside the database; later, --expect-head <that head> proves the chain was not rewritten since.");
      } else {
        console.log(`audit chain BROKEN: ${verdict.broken.length} of ${verdict.entries} entries`);
        for (const b of verdict.broken) console.log(`  entry ${b.id}: ${b.reason}`);
      }
      if (verdict.broken.length > 0) process.exitCode = 1;
    });

  const backups = cli.command("backup").description("backups of a stack's primary with pgBackRest (point-in-time restores: nbdb restore)");
  backups
    .command("take", { isDefault: true })
    .description("take a backup (pgBackRest as the server user, connecting as nb_backup); older full backups beyond the retention expire")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--type <type>", "full, diff (changes since the last full) or incr (since the last backup)", "full")
    .action(async (o: { stack: string; type: string }) => {
      const b = await backup({ stack: o.stack, type: parseBackupType(o.type), log });
      console.log(`backup ${b.label} (${b.type}) of stack ${o.stack}: ${(b.databaseBytes / 1048576).toFixed(1)} MB of data, ${(b.repositoryBytes / 1048576).toFixed(1)} MB added to the repository; finished ${b.stop}`);
    });
  backups
    .command("list")
    .description("the stack's backups and the earliest time a restore can reach")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--json", "print JSON for machines")
    .action(async (o: { stack: string; json?: boolean }) => {
      const l = await listBackups(o.stack);
      if (o.json) return void console.log(JSON.stringify(l, null, 2));
      if (l.backups.length === 0) return void console.log(`stack ${o.stack} has no backup yet (repository ${l.repository}); take one with: npx nbdb backup --stack ${o.stack}`);
      const t = new Table({ ...tableStyle, head: ["backup", "type", "started", "finished", "data MB", "added MB", "WAL from", "WAL to"] });
      for (const b of l.backups) t.push([b.label, b.type, b.start, b.stop, (b.databaseBytes / 1048576).toFixed(1), (b.repositoryBytes / 1048576).toFixed(1), b.walStart, b.walStop]);
      console.log(t.toString());
      console.log(`repository ${l.repository}; a restore reaches any time from ${l.earliestRestore} to the last archived WAL (${l.latestArchivedWal ?? "-"})`);
    });

  cli
    .command("restore")
    .description("restore a stack as it was at a point in time into a NEW stack (own ports and passwords, same data key); the source is never touched")
    .option("--stack <name>", "the source stack", stackOption, "local")
    .requiredOption("--to <time>", "the time to restore to, with its zone (e.g. 2026-12-01T22:30:00Z)")
    .requiredOption("--into <name>", "the new stack to create", stackOption)
    .action(async (o: { stack: string; to: string; into: string }) => {
      const r = await restore({ stack: o.stack, to: o.to, into: o.into, log });
      console.log(`stack ${o.into} restored from ${o.stack} as of ${r.target} (backup ${r.from}); primary ${r.outputs.primary.host}:${r.outputs.primary.port}, pooler ${r.outputs.pooler.host}:${r.outputs.pooler.port}`);
      console.log(`connection strings (new passwords): ${outputsFile(o.into)}`);
    });

  cli
    .command("bench")
    .description("measure the platform on a local stack as ratios measured in one run (sides alternated); writes a Markdown report and its JSON twin")
    .option("--stack <name>", "stack to measure; created with 1 replica if absent (bench tables and users are removed afterwards)", stackOption, BENCH_STACK)
    .option("--quick", "small sizes, seconds in all (the smoke test); report goes to .nbdb/<stack>/bench-quick.md")
    .option("--only <ids>", `comma-separated benchmarks to run: ${BENCHMARKS.map((b) => b.id).join(", ")}`)
    .option("--report <file>", "Markdown report to write, JSON beside it (default: BENCHMARKS.md for a full run)")
    .option("--json", "print the results as JSON")
    .action(async (o: { stack: string; quick?: boolean; only?: string; report?: string; json?: boolean }) => {
      const { run, files } = await runBench({ stack: o.stack, quick: o.quick, only: o.only?.split(","), report: o.report });
      if (o.json) console.log(JSON.stringify(run, null, 2));
      else for (const f of run.figures) console.log(`${f.met === false ? "MISSED" : "ok    "} ${f.id}: ${f.value.median.toPrecision(3)} ${f.unit} (goal ${f.goal})`);
      for (const f of run.failures) console.log(`FAILED ${f.benchmark}: ${f.error}`);
      console.log(`report: ${files.markdown} (JSON: ${files.json}); stack ${o.stack} is left running (npx nbdb down --stack ${o.stack}).`);
      if (run.failures.length > 0) process.exitCode = 1;
    });

  return cli;
}

/**
 * Exit codes: 0 success; 1 a verdict (drift, a refused bundle, a broken chain, changed grants);
 * 2 an error (bad input, or anything that stopped the command), so scripts can tell them apart.
 */
export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`nbdb: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  }
}
