// nbdb maintain: partitions, retention, roll-ups, analyze; the index bloat report.
import { Target } from "../ops/target";
import { maintain } from "../ops/maintain";
import { defineCommand, mb } from "./command";

export default defineCommand({
  name: "maintain",
  description: "partitions ahead and retention, strays moved, roll-ups refreshed, changed partitions analyzed; reports bloated indexes; as nb_migrator",
  stack: {},
  target: true,
  options: [{ flags: "--reindex", help: "also run the REINDEX CONCURRENTLY the bloat report proposes" }],
  run: async (o: { target: () => Promise<Target>; reindex?: boolean }) => maintain((await o.target()).url("migrator"), { reindex: o.reindex }),
  json: { render: (r) => r },
  text(r, _o, print) {
    print(`partitions: ${r.partitionsCreated} created, ${r.partitionsRetired} retired; ${r.rowsMoved} rows moved out of default partitions`);
    print(`roll-ups refreshed; analyzed: ${r.analyzed.length ? r.analyzed.join(", ") : "nothing changed enough"}`);
    if (r.droppedLeftovers.length) print(`dropped leftovers of an interrupted REINDEX: ${r.droppedLeftovers.join(", ")}`);
    if (r.bloated.length === 0) print("no bloated index (estimated free space below 30% or index under 1 MB)");
    for (const b of r.bloated) {
      const done = r.reindexed.includes(b.index) ? "reindexed" : "would run";
      print(`bloat ${(b.bloat * 100).toFixed(0)}% of ${mb(b.bytes)} MB in ${b.index}: ${done} ${b.reindex}`);
    }
  },
});
