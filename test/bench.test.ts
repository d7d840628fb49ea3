// Smoke test of `nbdb bench`: every benchmark runs end to end in --quick mode on a stack of its
// own and produces a finite figure with its method. Whether goals are met is for BENCHMARKS.md.
import { expect } from "chai";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { BENCHMARKS, runBench } from "../scripts/bench";
import { withClient } from "../scripts/bench/db";
import { renderResults } from "../scripts/bench/report";
import { alternate, isWide, spread } from "../scripts/bench/runner";
import { SWITCHOVER_GOAL_S, lostCommits, switchoverMet } from "../scripts/bench/switchover";
import { knownStacks, readOutputs } from "../scripts/local/state";
import { seed } from "../scripts/ops/seed";
import { uniqueStack } from "./helpers";

const FIGURES = [
  "ingest.copy",
  "ingest.insert",
  "window.day",
  "window.hour",
  "brin.size",
  "retention.drop_day",
  "retention.drop_day_wal",
  "audit_update.c1",
  "audit_update.c8",
  "rls.select",
  "session.user_context",
  "session.context",
  "session.reset_plain",
  "session.reset_rls",
  "pooler.many_clients",
  "pooler.efficiency",
  "replica.lag",
  "audit.verify",
  "audit.verify_since",
  "seed.throughput",
  "up.noop",
  "stall.maintain",
  "stall.migration",
  "backup.full",
  "backup.restore",
  "switchover.wait",
];

describe("bench measurement discipline", () => {
  it("summarises rounds by median, range and interpolated quartiles", () => {
    const s = spread([5, 1, 4, 2, 3]);
    expect([s.min, s.q1, s.median, s.q3, s.max]).to.deep.equal([1, 2, 3, 4, 5]);
    expect(spread([1, 2, 3, 4]).q1).to.equal(1.75);
  });

  it("flags a figure whose middle half of rounds spans more than a tenth of its median", () => {
    expect(isWide(spread([0.99, 1, 1, 1, 1.01]))).to.equal(false);
    expect(isWide(spread([0.8, 0.9, 1, 1.1, 1.2]))).to.equal(true);
  });

  it("warms each side up once, untimed, then alternates the order every round", async () => {
    const calls: string[] = [];
    const side = (name: string) => async (round: number) => {
      calls.push(`${name}${round}`);
      return round;
    };
    const r = await alternate(2, { subject: side("s"), baseline: side("b") }, { warmup: true });
    expect(calls).to.deep.equal(["s-1", "b-1", "s0", "b0", "b1", "s1"]);
    expect(r).to.deep.equal({ subject: [0, 1], baseline: [0, 1] });
  });

  it("counts an acknowledged commit the new primary lacks as lost, and meets the switchover goal only with no wait past it, no error and nothing lost", () => {
    expect(lostCommits(["a", "b", "c"], ["c", "a", "x"])).to.deep.equal(["b"]);
    const ok = { worstS: SWITCHOVER_GOAL_S, errors: 0, lost: 0 };
    expect(switchoverMet([ok, ok])).to.equal(true);
    expect(switchoverMet([ok, { ...ok, worstS: SWITCHOVER_GOAL_S + 0.1 }])).to.equal(false);
    expect(switchoverMet([ok, { ...ok, errors: 1 }])).to.equal(false);
    expect(switchoverMet([{ ...ok, lost: 1 }])).to.equal(false);
    expect(switchoverMet([])).to.equal(false);
  });

  it("reports each figure's spread and marks a wide one", () => {
    const figure = (id: string, samples: number[]) => ({
      id, title: id, against: "x", goal: "≥ 1", value: spread(samples), unit: "×", met: true, method: "m", details: {}, evidence: [],
    });
    const md = renderResults({
      mode: "full", stack: "s", startedAt: "t", durationSeconds: 60, rounds: 5, postgres: "PostgreSQL 15", pgbouncer: "PgBouncer 1.24",
      machine: { cpus: 2, cpuModel: "cpu", memoryGiB: 1, os: "os" },
      figures: [figure("steady", [1, 1, 1, 1, 1]), figure("noisy", [0.5, 0.8, 1, 1.2, 1.5])], failures: [],
    });
    expect(md).to.match(/\| steady \|.*\| 0% \| yes \|/);
    expect(md).to.match(/\| noisy \|.*\| \*\*40% wide\*\* \| yes \|/);
  });
});

describe("nbdb bench --quick", function () {
  const stack = uniqueStack("bench");
  const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-bench-report-")), "BENCHMARKS.md");
  let result: Awaited<ReturnType<typeof runBench>>;

  before(async function () {
    // Seconds of work per figure, but fifteen benchmarks and their stack on two cores shared with other runs.
    this.timeout(420_000);
    result = await runBench({ stack, quick: true, report });
  });

  it("runs every benchmark without a failure", () => {
    expect(result.run.failures).to.deep.equal([]);
    expect(BENCHMARKS.length).to.equal(15);
    expect(BENCHMARKS[BENCHMARKS.length - 1].id, "the switchover runs last").to.equal("switchover");
  });

  it("produces every figure with a finite median, range, method and goal verdict", () => {
    expect(result.run.figures.map((f) => f.id)).to.have.members(FIGURES);
    for (const f of result.run.figures) {
      for (const v of [f.value.median, f.value.min, f.value.max]) expect(Number.isFinite(v), `${f.id}: ${v}`).to.equal(true);
      expect(f.value.min).to.be.at.most(f.value.median);
      expect(f.value.median).to.be.at.most(f.value.max);
      expect(f.method, f.id).to.have.length.greaterThan(20);
      expect(f.met === null || typeof f.met === "boolean", f.id).to.equal(true);
    }
  });

  it("writes the Markdown table and its JSON twin", () => {
    const markdown = fs.readFileSync(result.files.markdown, "utf8");
    for (const f of result.run.figures) expect(markdown).to.include(`| ${f.title} |`);
    expect(markdown).to.include("PostgreSQL 15");
    const json = JSON.parse(fs.readFileSync(result.files.json, "utf8"));
    expect(json.figures).to.have.length(FIGURES.length);
    expect(json.machine.cpus).to.be.greaterThan(0);
  });

  it("removes its throw-away stacks, bench tables, partitions and users", async () => {
    expect(knownStacks().filter((s) => s.startsWith("bench-up-"))).to.deep.equal([]);
    const left = await withClient(readOutputs(stack).connections.admin, async (c) =>
      (
        await c.query(
          `SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'nbdb_bench')
                + (SELECT count(*) FROM pg_class WHERE relname LIKE 'metrics\\_bench\\_p%')
                + (SELECT count(*) FROM neuralblitz.users WHERE username LIKE 'nbdb-bench-%') AS n`,
        )
      ).rows[0].n,
    );
    expect(Number(left)).to.equal(0);
  });

  it("skips the seed figure (not a failure) on a stack holding seed data it did not load (it would replace it), and leaves that data", async function () {
    this.timeout(120_000);
    await seed({ stack, scale: 0.1, seed: 7, progressTo: null });
    const seeded = async () => Number((await withClient(readOutputs(stack).connections.admin, (c) => c.query("SELECT count(*) AS n FROM neuralblitz.users WHERE username LIKE 'seed\\_%'"))).rows[0].n);
    const before = await seeded();
    expect(before).to.be.greaterThan(0);
    const again = await runBench({ stack, quick: true, only: ["seed"], report });
    expect(again.run.figures).to.deep.equal([]);
    expect(again.run.failures).to.deep.equal([]);
    expect((again.run.skipped ?? []).map((f) => f.reason)).to.deep.equal([
      `stack ${stack} holds seed data (users seed_*, metrics seed-*): the seed benchmark would replace it, so it did not run; measure on a stack without seed data (--stack <a new name>), or remove it there first`,
    ]);
    expect(await seeded()).to.equal(before);
  });
});
