// Index size: the BRIN on metrics.ts (summed over the bench partitions) against a B-tree on the
// same column over the same rows (the window benchmark's baseline). Sizes do not vary between
// rounds, so this figure is read once.
import { FLAT_TABLE, windowData } from "./metricsData";
import { withClient } from "./db";
import { spread } from "./runner";
import { Benchmark, BenchContext, Figure } from "./types";

export const brinSize: Benchmark = {
  id: "brin",
  title: "BRIN index size",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const data = await windowData(ctx);
    const sizes = await withClient(ctx.outputs.connections.admin, async (c) => {
      const brin = await c.query(
        `SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0)::float8 AS bytes, string_agg(DISTINCT am.amname, ',') AS am
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
          WHERE i.indrelid = ANY ($1::regclass[]) AND am.amname = 'brin'`,
        [data.partitions],
      );
      const btree = await c.query("SELECT pg_relation_size('nbdb_bench.metrics_flat_ts')::float8 AS bytes");
      return { brin: Number(brin.rows[0].bytes), btree: Number(btree.rows[0].bytes) };
    });
    const value = spread([sizes.brin / sizes.btree]);
    return [
      {
        id: "brin.size",
        title: `BRIN index size on metrics.ts (${data.rows.toLocaleString("en")} rows, ${data.days} daily partitions)`,
        against: `a B-tree on ts over the same rows (${FLAT_TABLE})`,
        goal: "≤ 1/50",
        value,
        unit: "of the B-tree's size",
        met: value.median <= 1 / 50,
        method: "pg_relation_size of the BRIN index of every bench partition, summed, over that of the B-tree; deterministic, so read once.",
        details: { brinBytes: sizes.brin, btreeBytes: sizes.btree, brinPerBtree: `1/${Math.round(sizes.btree / sizes.brin)}` },
        evidence: [`each partition's BRIN is at least 3 pages (meta, range map, one summary page): ${data.days} partitions cost at least ${data.days * 24} kB`],
      },
    ];
  },
};
