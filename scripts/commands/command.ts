// What one `nbdb` command is: its options, its run and its rendering. scripts/nbdb.ts turns the
// registry of these into the command line and adds what every command shares once: `--stack`,
// `--json`, `--help`, printing and the exit codes. A command module never calls process.exit or
// sets process.exitCode; it says whether its result is a verdict (exit code 1) with `verdict`.
import { InvalidArgumentError } from "commander";
import { parseReplicaCount } from "../local/context";
import { validateStackName } from "../local/state";

/** One option, as commander declares it: `--name <value>` takes a value, `--name` is a flag. */
export interface OptionSpec {
  readonly flags: string;
  readonly help: string;
  readonly default?: string;
  /** Turns the text into the value; a throw is a usage error (exit code 2) naming the option. */
  readonly parse?: (value: string) => unknown;
  /** The command refuses to run without it. */
  readonly required?: boolean;
}

/** What a command's run and rendering receive besides its options. */
export interface CommandContext {
  /** Progress for people, on stderr (`nbdb: ...`), never part of the result. */
  readonly log: (line: string) => void;
}

export type Print = (line: string) => void;

export interface CommandSpec<O, R> {
  /** The words that call it: "up", or a group and its subcommand: "audit verify". */
  readonly name: string;
  readonly description: string;
  /** Takes `--stack <name>` (added first, before `options`); `help` and `default` override "stack name" and "local". */
  readonly stack?: { readonly help?: string; readonly default?: string };
  /**
   * Works on deployed stacks too: takes --pulumi-stack, --service and --pg-env besides --stack, and
   * `run` receives `target()`, which resolves the database they name (scripts/ops/target.ts, docs/deployed.md).
   */
  readonly target?: boolean;
  /** Positional arguments, in order; their values reach `run` under their names. */
  readonly args?: readonly { readonly name: string; readonly help: string }[];
  readonly options?: readonly OptionSpec[];
  /** Takes `--json` (added last): `render` gives the value printed instead of the text; undefined prints the text. */
  readonly json?: { readonly help?: string; readonly render: (result: R, opts: O) => unknown };
  /** The subcommand its group runs when called without one (`nbdb backup` = `nbdb backup take`). */
  readonly isDefault?: boolean;
  run(opts: O, ctx: CommandContext): Promise<R> | R;
  /** The report for people, on stdout. */
  text(result: R, opts: O, print: Print): void;
  /** Lines printed after the report in either form. */
  footer?(result: R, opts: O, print: Print): void;
  /** True when the result is a verdict against the stack (drift, a refused bundle, a broken chain): exit code 1. */
  verdict?(result: R): boolean;
}

/** A command of the registry, whatever its option and result types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCommand = CommandSpec<any, any>;

/** Declares a command with its option and result types checked (the registry holds them untyped). */
export function defineCommand<O, R>(spec: CommandSpec<O, R>): CommandSpec<O, R> {
  return spec;
}

/** A parser of the model's own, as an option's parse: its message becomes commander's usage error. */
export function optionParser<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

export const stackName = optionParser(validateStackName);
export const replicaCount = optionParser(parseReplicaCount);

/** A number for a table cell; "-" when unknown. */
export function fmt(v: number | null, digits = 0): string {
  return v === null ? "-" : v.toFixed(digits);
}

/** cli-table3 options: colours only on a terminal; piped output stays plain text. */
export const tableStyle = process.stdout.isTTY ? {} : { style: { head: [], border: [] } };

/** Megabytes with one decimal, as every backup line prints them. */
export const mb = (bytes: number): string => (bytes / 1048576).toFixed(1);
