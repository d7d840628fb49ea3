// nbdb bench: measure the platform on a local stack; a Markdown report and its JSON twin.
import { BENCHMARKS, BENCH_STACK, runBench } from "../bench";
import { defineCommand } from "./command";

export default defineCommand({
  name: "bench",
  description: "measure the platform on a local stack as ratios measured in one run (sides alternated); writes a Markdown report and its JSON twin",
  stack: { help: "stack to measure; created with 1 replica if absent (bench tables and users are removed afterwards)", default: BENCH_STACK },
  options: [
    { flags: "--quick", help: "small sizes, seconds in all (the smoke test); report goes to .nbdb/<stack>/bench-quick.md" },
    { flags: "--only <ids>", help: `comma-separated benchmarks to run: ${BENCHMARKS.map((b) => b.id).join(", ")}` },
    { flags: "--report <file>", help: "Markdown report to write, JSON beside it (default: BENCHMARKS.md for a full run)" },
  ],
  run: (o: { stack: string; quick?: boolean; only?: string; report?: string }) => runBench({ stack: o.stack, quick: o.quick, only: o.only?.split(","), report: o.report }),
  json: { help: "print the results as JSON", render: (r) => r.run },
  text(r, _o, print) {
    for (const f of r.run.figures) print(`${f.met === false ? "MISSED" : "ok    "} ${f.id}: ${f.value.median.toPrecision(3)} ${f.unit} (goal ${f.goal})`);
  },
  footer(r, o, print) {
    for (const f of r.run.failures) print(`FAILED ${f.benchmark}: ${f.error}`);
    for (const f of r.run.skipped ?? []) print(`SKIPPED ${f.benchmark}: ${f.reason}`);
    print(`report: ${r.files.markdown} (JSON: ${r.files.json}); stack ${o.stack} is left running (npx nbdb down --stack ${o.stack}).`);
  },
  verdict: (r) => r.run.failures.length > 0,
});
