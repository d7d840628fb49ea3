// Window aggregates over the bench metrics: the same query, with the same windows, on the
// partitioned `metrics` (BRIN on ts, btree (name, ts)) and on an unpartitioned copy with a B-tree
// on ts. The figure is the baseline's latency over the partitioned table's (a speed-up). Partitioning
// is not expected to make the aggregate faster (both read the same heap pages and aggregate the same
// rows; what it buys is retention, see retention.ts): the goal is that it is no slower and that the
// one-day window reads one partition.
import { Client } from "pg";
import { FLAT_TABLE, benchDay, windowData } from "./metricsData";
import { withClient } from "./db";
import { alternate, ratios, spread, timed } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const HOUR_MS = 3_600_000;
const query = (table: string) => `SELECT name, count(*), avg(value), max(value) FROM ${table} WHERE ts >= $1 AND ts < $2 GROUP BY name`;

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Actual Loops"?: number;
  Plans?: PlanNode[];
}

function scans(node: PlanNode): PlanNode[] {
  const own = node["Relation Name"] && (node["Actual Loops"] ?? 0) > 0 ? [node] : [];
  return [...own, ...(node.Plans ?? []).flatMap(scans)];
}

async function explainScans(c: Client, table: string, window: [Date, Date]): Promise<PlanNode[]> {
  const res = await c.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${query(table)}`, window);
  return scans(res.rows[0]["QUERY PLAN"][0].Plan);
}

const describe = (n: PlanNode) => `${n["Node Type"]} on ${n["Relation Name"]}${n["Index Name"] ? ` using ${n["Index Name"]}` : ""}`;

async function windowFigure(ctx: BenchContext, c: Client, kind: "day" | "hour", windows: [Date, Date][], rows: number): Promise<Figure> {
  const meanMs = async (table: string, round: number) => {
    ctx.note(round < 0 ? `one-${kind} window warm-up on ${table}` : `one-${kind} window round ${round + 1}/${ctx.rounds} on ${table}`);
    let total = 0;
    for (const w of windows) total += await timed(() => c.query(query(table), w));
    return total / windows.length;
  };
  for (const table of ["neuralblitz.metrics", FLAT_TABLE]) await meanMs(table, -1);
  const sides = await alternate(ctx.rounds, { subject: (r) => meanMs("neuralblitz.metrics", r), baseline: (r) => meanMs(FLAT_TABLE, r) });
  const value = ratios(sides.baseline, sides.subject);
  const partitioned = await explainScans(c, "neuralblitz.metrics", windows[0]);
  const flat = await explainScans(c, FLAT_TABLE, windows[0]);
  const partitionsScanned = new Set(partitioned.map((n) => n["Relation Name"])).size;
  return {
    id: `window.${kind}`,
    title: `one-${kind} window aggregate (count, avg, max by name) over ${rows.toLocaleString("en")} rows`,
    against: "the same query on an unpartitioned copy with a B-tree on ts",
    goal: kind === "day" ? "≥ 1.0× (no slower), 1 partition scanned" : "reported (the one-day window carries the goal)",
    value,
    unit: "× faster",
    met: kind === "day" ? value.median >= 1 && partitionsScanned === 1 : null,
    method: `${windows.length} different ${kind} windows per side per round (mean latency, client-measured, parameters bound so the planner prunes), both sides warmed once first and vacuumed/analyzed.`,
    details: { metricsMs: spread(sides.subject), baselineMs: spread(sides.baseline), partitionsScanned },
    evidence: [`metrics plan: ${partitioned.map(describe).join("; ")}`, `baseline plan: ${flat.map(describe).join("; ")}`],
  };
}

export const windowQuery: Benchmark = {
  id: "window",
  title: "metric window aggregates",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const data = await windowData(ctx);
    const reps = sized(ctx, { quick: 3, full: 5 });
    const day = (i: number) => benchDay((i * 7) % data.days);
    const days = Array.from({ length: reps }, (_, i): [Date, Date] => [day(i), benchDay(((i * 7) % data.days) + 1)]);
    const hours = Array.from({ length: reps }, (_, i): [Date, Date] => {
      const start = new Date(day(i).getTime() + ((i * 5 + 3) % 24) * HOUR_MS);
      return [start, new Date(start.getTime() + HOUR_MS)];
    });
    return withClient(ctx.outputs.connections.admin, async (c) => [
      await windowFigure(ctx, c, "day", days, data.rows),
      await windowFigure(ctx, c, "hour", hours, data.rows),
    ]);
  },
};
