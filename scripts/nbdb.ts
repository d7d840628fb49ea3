// The `nbdb` command line: the registry of commands (one module each in scripts/commands/) turned
// into commander commands. What every command shares is added here once: `--stack`, `--json`,
// `--help`, printing the report and the exit codes. Adding a command = its module + one line in
// COMMANDS (and, for a new group, one line in GROUPS); docs/architecture.md says how.
import { Command } from "commander";
import auditVerify from "./commands/auditVerify";
import backupList from "./commands/backupList";
import backupTake from "./commands/backupTake";
import bench from "./commands/bench";
import { AnyCommand, CommandContext, OptionSpec, stackName } from "./commands/command";
import down from "./commands/down";
import failover from "./commands/failover";
import grantsDiff from "./commands/grantsDiff";
import maintain from "./commands/maintain";
import migrationNew from "./commands/migrationNew";
import plan from "./commands/plan";
import reset from "./commands/reset";
import restore from "./commands/restore";
import seed from "./commands/seed";
import setup from "./commands/setup";
import start from "./commands/start";
import status from "./commands/status";
import switchover from "./commands/switchover";
import up from "./commands/up";
import verify from "./commands/verify";
import { TARGET_OPTIONS, TargetOptions, resolveTarget } from "./ops/target";

/** Every command, in the order `nbdb --help` lists them. */
export const COMMANDS: readonly AnyCommand[] = [
  up,
  setup,
  start,
  down,
  reset,
  status,
  plan,
  seed,
  maintain,
  verify,
  grantsDiff,
  migrationNew,
  auditVerify,
  backupTake,
  backupList,
  restore,
  switchover,
  failover,
  bench,
];

/** The groups of two-word commands ("audit verify"): the group's description. */
export const GROUPS: Readonly<Record<string, string>> = {
  grants: "the privilege model (schema/privileges.ts)",
  migration: "SQL migrations (sql/migrations/)",
  audit: "the GoldenDAG audit trail",
  backup: "backups of a stack's primary with pgBackRest (point-in-time restores: nbdb restore)",
};

/** The options every command with `--stack` / `--json` gets. */
export const STACK_OPTION = { flags: "--stack <name>", help: "stack name", default: "local" } as const;
export const JSON_OPTION = { flags: "--json", help: "print JSON for machines" } as const;

const context: CommandContext = { log: (line) => process.stderr.write(`nbdb: ${line}\n`) };
const print = (line: string): void => console.log(line);

async function runCommand(spec: AnyCommand, opts: Record<string, unknown>): Promise<void> {
  const result = await spec.run(opts, context);
  const json = opts.json && spec.json ? spec.json.render(result, opts) : undefined;
  if (json !== undefined) print(JSON.stringify(json, null, 2));
  else spec.text(result, opts, print);
  spec.footer?.(result, opts, print);
  if (spec.verdict?.(result)) process.exitCode = 1;
}

/** A command's options in the order --help and docs/commands.md list them: --stack, the deployed-stack targets, its own, --json. */
export function optionsOf(spec: AnyCommand): OptionSpec[] {
  return [
    ...(spec.stack ? [{ ...STACK_OPTION, parse: stackName, help: spec.stack.help ?? STACK_OPTION.help, default: spec.stack.default ?? STACK_OPTION.default }] : []),
    ...(spec.target ? TARGET_OPTIONS : []),
    ...(spec.options ?? []),
    ...(spec.json ? [{ ...JSON_OPTION, help: spec.json.help ?? JSON_OPTION.help }] : []),
  ];
}

function addCommand(cli: Command, spec: AnyCommand): void {
  const words = spec.name.split(" ");
  if (words.length > 2) throw new Error(`command '${spec.name}': at most a group and a subcommand`);
  let parent = cli;
  if (words.length === 2) {
    const description = GROUPS[words[0]];
    if (description === undefined) throw new Error(`command '${spec.name}': no group '${words[0]}' in GROUPS`);
    parent = cli.commands.find((c) => c.name() === words[0]) ?? cli.command(words[0]).description(description);
  }
  const cmd = parent.command(words[words.length - 1], { isDefault: spec.isDefault }).description(spec.description);
  for (const a of spec.args ?? []) cmd.argument(`<${a.name}>`, a.help);
  const options = optionsOf(spec);
  for (const o of options) {
    const add = o.required ? cmd.requiredOption.bind(cmd) : cmd.option.bind(cmd);
    if (o.parse) add(o.flags, o.help, o.parse, o.default);
    else add(o.flags, o.help, o.default);
  }
  cmd.action(async (...params: unknown[]) => {
    const command = params[params.length - 1] as Command;
    const positional = Object.fromEntries((spec.args ?? []).map((a, i) => [a.name, command.processedArgs[i]]));
    const opts: Record<string, unknown> = { ...command.opts(), ...positional };
    // Resolved when the command asks (verify --regenerate needs none); --stack given by hand beside
    // --pulumi-stack/--service/--pg-env is a contradiction resolveTarget names.
    const stackGiven = command.getOptionValueSource("stack") === "cli";
    if (spec.target) opts.target = () => resolveTarget(opts as unknown as TargetOptions, stackGiven);
    await runCommand(spec, opts);
  });
}

export function program(commands: readonly AnyCommand[] = COMMANDS): Command {
  const cli = new Command("nbdb")
    .description("NeuralBlitz PostgreSQL platform: the local stack (primary, streaming replicas, PgBouncer) and its operations.")
    .showHelpAfterError("(run with --help for usage)")
    // Usage errors exit with 2 like every other error (1 is a verdict); --help and --version with 0.
    // Every command inherits this from the root.
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
  for (const spec of commands) addCommand(cli, spec);
  return cli;
}

/**
 * Exit codes: 0 success; 1 a verdict (drift, a refused bundle, a broken chain, changed grants: a
 * command's `verdict`); 2 an error (bad input, or anything that stopped the command), so scripts
 * can tell them apart. The message is printed, never a stack trace.
 */
export async function main(argv: string[], commands: readonly AnyCommand[] = COMMANDS): Promise<void> {
  try {
    await program(commands).parseAsync(argv);
  } catch (e) {
    process.stderr.write(`nbdb: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  }
}
