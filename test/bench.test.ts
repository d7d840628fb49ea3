// Smoke test of `nbdb bench`: every benchmark runs end to end in --quick mode on a stack of its
// own and produces a finite figure with its method. Whether goals are met is for BENCHMARKS.md.
import { expect } from "chai";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { BENCHMARKS, runBench } from "../scripts/bench";
import { withClient } from "../scripts/bench/db";
import { knownStacks, readOutputs } from "../scripts/local/state";
import { uniqueStack } from "./helpers";

const FIGURES = [
  "ingest.copy",
  "ingest.insert",
  "window.day",
  "window.hour",
  "brin.size",
  "audit_update.c1",
  "audit_update.c8",
  "rls.select",
  "session.context",
  "session.reset_plain",
  "session.reset_rls",
  "pooler.connect_per_tx",
  "pooler.many_clients",
  "replica.lag",
  "audit.verify",
  "up.noop",
  "stall.maintain",
  "stall.migration",
  "backup.full",
  "backup.restore",
];

describe("nbdb bench --quick", function () {
  const stack = uniqueStack("bench");
  const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-bench-report-")), "BENCHMARKS.md");
  let result: Awaited<ReturnType<typeof runBench>>;

  before(async () => {
    result = await runBench({ stack, quick: true, report });
  });

  it("runs every benchmark without a failure", () => {
    expect(result.run.failures).to.deep.equal([]);
    expect(BENCHMARKS.length).to.equal(13);
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
});
