// The `nbdb` command line. Each command is a thin layer over a module that tests call directly.
import { Command, InvalidArgumentError } from "commander";
import Table from "cli-table3";
import { planDeploy } from "../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../infra/bundles/catalog";
import { PlanEntry } from "../infra/bundles/plan";
import { parseReplicaCount } from "./local/context";
import { UserError } from "./local/errors";
import { verifyAuditTrail } from "./ops/audit";
import { StackStatus, down, status, up } from "./local/stack";
import { readOutputs, validateStackName } from "./local/state";

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
  const pooler = new Table({ ...tableStyle, head: ["pooler", "port", "pid", "running", "database", "user", "clients active", "clients waiting", "servers active", "servers idle"] });
  const base = ["pgbouncer", s.pooler.port, s.pooler.pid ?? "-", s.pooler.running ? "yes" : "NO"];
  if (s.pooler.pools.length === 0) pooler.push([...base, "-", "-", "-", "-", "-", "-"]);
  for (const p of s.pooler.pools) pooler.push([...base, p.database, p.user, p.clientsActive, p.clientsWaiting, p.serversActive, p.serversIdle]);
  console.log(pooler.toString());
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
    .showHelpAfterError("(run with --help for usage)");

  cli
    .command("up")
    .description("create or converge a local stack: primary, streaming replicas and PgBouncer (idempotent)")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--replicas <n>", "number of streaming replicas (default: 2 for a new stack, the current count for an existing one)", replicasOption)
    .action(async (o: { stack: string; replicas?: number }) => {
      const res = await up({ stack: o.stack, replicas: o.replicas, log });
      if (res.changes.length === 0) console.log(`stack ${o.stack} is up to date: nothing changed.`);
      else for (const c of res.changes) console.log(`- ${c}`);
      const out = res.outputs;
      console.log(`primary   ${out.primary.host}:${out.primary.port}`);
      out.replicas.forEach((r, i) => console.log(`replica-${i} ${r.host}:${r.port}`));
      console.log(`pooler    ${out.pooler.host}:${out.pooler.port} (${out.pooler.poolMode} pooling)`);
      console.log(`connection strings (with passwords): .nbdb/${o.stack}/outputs.json`);
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
    .command("status")
    .description("show each node (role, port, pid, running, replication lag) and the pooler's pools")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--json", "print JSON for machines")
    .action(async (o: { stack: string; json?: boolean }) => {
      const s = await status(o.stack);
      if (o.json) console.log(JSON.stringify(s, null, 2));
      else printStatus(s);
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

  const audit = cli.command("audit").description("the GoldenDAG audit trail");
  audit
    .command("verify")
    .description("check every link of the audit chain (as nb_auditor); exit code 1 when any entry is broken")
    .option("--stack <name>", "stack name", stackOption, "local")
    .option("--json", "print JSON for machines")
    .action(async (o: { stack: string; json?: boolean }) => {
      const verdict = await verifyAuditTrail(readOutputs(o.stack).connections.auditor);
      if (o.json) console.log(JSON.stringify(verdict, null, 2));
      else if (verdict.broken.length === 0) {
        console.log(`audit chain intact: ${verdict.entries} entries; head entry ${verdict.head.id ?? "-"} sha256 ${verdict.head.hash}`);
        console.log("Record the head hash outside the database: a later head that does not extend it means the chain was rewritten.");
      } else {
        console.log(`audit chain BROKEN: ${verdict.broken.length} of ${verdict.entries} entries`);
        for (const b of verdict.broken) console.log(`  entry ${b.id}: ${b.reason}`);
      }
      if (verdict.broken.length > 0) process.exitCode = 1;
    });

  return cli;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(`nbdb: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`nbdb: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    }
  }
}
