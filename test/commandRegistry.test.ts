// The command line is assembled from the registry (scripts/nbdb.ts + one module per command in
// scripts/commands/): what it adds to every command once (--stack, --json, printing, exit codes)
// and that every command module is registered. Pure: a made-up command, no servers.
import { expect } from "chai";
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { AnyCommand, CommandSpec, defineCommand } from "../scripts/commands/command";
import { UserError } from "../scripts/errors";
import { COMMANDS, GROUPS, main, optionsOf } from "../scripts/nbdb";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");

interface Seen {
  opts?: Record<string, unknown>;
}

/** A command that reports what it was given; `--fail` throws a UserError, `--drift` is a verdict. */
function fakeCommand(seen: Seen, name = "fake"): CommandSpec<Record<string, unknown>, { drift: boolean; stack: string }> {
  return defineCommand({
    name,
    description: "a command of the test",
    stack: {},
    args: name.includes(" ") ? [{ name: "thing", help: "a positional argument" }] : undefined,
    options: [
      { flags: "--fail", help: "throw a UserError" },
      { flags: "--drift", help: "report a verdict" },
      { flags: "--count <n>", help: "a parsed value", parse: Number },
    ],
    run(o: Record<string, unknown>) {
      seen.opts = o;
      if (o.fail) throw new UserError("the fake command failed: do something else.");
      return { drift: o.drift === true, stack: o.stack as string };
    },
    json: { render: (r) => ({ json: r }) },
    text: (r, _o, print) => print(`text for ${r.stack}`),
    footer: (_r, _o, print) => print("footer"),
    verdict: (r) => r.drift,
  });
}

/** Runs main() on argv with the registry given, capturing stdout, stderr and the exit code. */
async function run(commands: readonly AnyCommand[], ...argv: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const write = process.stderr.write.bind(process.stderr);
  const before = process.exitCode;
  process.exitCode = undefined;
  console.log = (line: string) => void out.push(`${line}\n`);
  process.stderr.write = ((chunk: string) => err.push(chunk) > 0) as typeof process.stderr.write;
  try {
    await main(["node", "nbdb", ...argv], commands);
    return { stdout: out.join(""), stderr: err.join(""), code: Number(process.exitCode ?? 0) };
  } finally {
    console.log = log;
    process.stderr.write = write;
    process.exitCode = before;
  }
}

describe("the nbdb command registry", function () {
  it("gives a command --stack (default local) and its options parsed, and prints its text report and footer", async function () {
    const seen: Seen = {};
    const r = await run([fakeCommand(seen)], "fake");
    expect(r).to.deep.equal({ stdout: "text for local\nfooter\n", stderr: "", code: 0 });
    expect(seen.opts).to.include({ stack: "local" });
    await run([fakeCommand(seen)], "fake", "--stack", "review-1", "--count", "7");
    expect(seen.opts).to.include({ stack: "review-1", count: 7 });
  });

  it("prints the command's JSON instead of the text with --json (the footer still follows)", async function () {
    const r = await run([fakeCommand({})], "fake", "--json");
    expect(r.stdout).to.equal(`${JSON.stringify({ json: { drift: false, stack: "local" } }, null, 2)}\nfooter\n`);
    expect(r.code).to.equal(0);
  });

  it("exits with 1 when the command's verdict says so, in either form", async function () {
    expect((await run([fakeCommand({})], "fake", "--drift")).code).to.equal(1);
    expect((await run([fakeCommand({})], "fake", "--drift", "--json")).code).to.equal(1);
  });

  it("exits with 2 on an error, printing its message (no stack trace) and no report", async function () {
    const r = await run([fakeCommand({})], "fake", "--fail");
    expect(r).to.deep.equal({ stdout: "", stderr: "nbdb: the fake command failed: do something else.\n", code: 2 });
  });

  it("places a two-word command in its group and hands its positional arguments to run by name", async function () {
    const seen: Seen = {};
    const r = await run([fakeCommand(seen, "audit fake")], "audit", "fake", "that-one");
    expect(r.code).to.equal(0);
    expect(seen.opts).to.include({ thing: "that-one", stack: "local" });
  });

  it("refuses a bad --stack as a usage error, exit code 2, before the command runs", async function () {
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [BIN, "status", "--stack", "Not A Stack"], (e, _out, stderr) => resolve({ code: e ? Number((e as { code?: number }).code) : 0, stderr })),
    );
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include("invalid stack name 'Not A Stack'");
  });

  it("registers every module of scripts/commands/ exactly once, each name once, every group described", function () {
    const dir = path.join(__dirname, "..", "scripts", "commands");
    const modules = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".ts") && f !== "command.ts")
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      .map((f) => require(path.join(dir, f)).default as AnyCommand);
    expect(modules.every((m) => m !== undefined && typeof m.run === "function"), "each module's default export is a command").to.equal(true);
    expect(COMMANDS).to.have.members(modules);
    expect(COMMANDS).to.have.length(modules.length);
    const names = COMMANDS.map((c) => c.name);
    expect(new Set(names).size).to.equal(names.length);
    for (const n of names.filter((x) => x.includes(" "))) expect(GROUPS, n).to.have.property(n.split(" ")[0]);
  });

  it("is documented in docs/commands.md: every command with exactly its arguments and options, and nothing else", function () {
    const page = fs.readFileSync(path.join(__dirname, "..", "docs", "commands.md"), "utf8");
    // Each command is a "## `nbdb <name> <args>`" section whose list items start with the option's flags.
    const sections = new Map<string, string[]>();
    for (const part of page.split(/^## /m).slice(1)) {
      const heading = /^`nbdb ([^`]+)`\n/.exec(part);
      expect(heading, `section heading: ${part.split("\n")[0]}`).to.not.equal(null);
      const name = heading![1].replace(/ <[^>]+>/g, "");
      expect(sections.has(name), `${name} documented once`).to.equal(false);
      sections.set(name, [...part.matchAll(/^- `((?:--|<)[^`]+)`/gm)].map((m) => m[1]));
    }
    expect([...sections.keys()]).to.have.members(COMMANDS.map((c) => c.name));
    for (const c of COMMANDS) {
      const flags = [...(c.args ?? []).map((a) => `<${a.name}>`), ...optionsOf(c).map((o) => o.flags)];
      expect(sections.get(c.name), `docs/commands.md, nbdb ${c.name}`).to.deep.equal(flags);
    }
  });
});
