// nbdb seed: deterministic development data in every table.
import { UserError } from "../errors";
import { parseScale, seed } from "../ops/seed";
import { defineCommand } from "./command";

export default defineCommand({
  name: "seed",
  description: "load deterministic development data into every table (replaces earlier seed data, never duplicates it)",
  stack: {},
  options: [
    { flags: "--scale <s>", help: "data volume: 1 loads in seconds, 100 loads millions of metric rows", default: "1" },
    { flags: "--seed <n>", help: "random seed: the same seed (and day) gives the same data", default: "1" },
    { flags: "--as-of <date>", help: "the day the data ends, YYYY-MM-DD (default: today, UTC)" },
    { flags: "--production-stack <name>", help: "required, equal to --stack, to seed a stack marked as production" },
  ],
  run(o: { stack: string; scale: string; seed: string; asOf?: string; productionStack?: string }) {
    const seedNumber = Number(o.seed);
    if (!Number.isInteger(seedNumber) || seedNumber < 0) throw new UserError(`--seed must be a whole number, got '${o.seed}'.`);
    const asOf = o.asOf === undefined ? undefined : new Date(`${o.asOf}T00:00:00Z`);
    if (asOf && Number.isNaN(asOf.getTime())) throw new UserError(`--as-of must be a date like 2026-11-26, got '${o.asOf}'.`);
    if (asOf && asOf.getTime() > Date.now()) throw new UserError(`--as-of ${o.asOf} is in the future: seed data ends today at the latest.`);
    return seed({ stack: o.stack, scale: parseScale(o.scale), seed: seedNumber, asOf, productionStack: o.productionStack });
  },
  text(report, _o, print) {
    const total = Object.values(report.rows).reduce((a, b) => a + b, 0);
    print(`seeded ${total} rows in ${(report.durationMs / 1000).toFixed(1)} s (tables analyzed)`);
  },
});
