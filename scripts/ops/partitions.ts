// Partition upkeep through neuralblitz.run_partition_maintenance() (R040 bundle): partitions ahead,
// strays moved out of DEFAULT partitions, retention. Run by `nbdb up` and `nbdb maintain`.
import { Client } from "pg";

export interface PartitionAction {
  readonly table: string;
  /** "kept in default": strays of an append-only table, which is never rewritten. */
  readonly action: "created" | "detached" | "dropped" | "kept in default";
  readonly partition: string;
  readonly rowsMoved: number | null;
}

/** Runs partition maintenance as of `now`; nothing when the schema does not have it (yet). */
export async function maintainPartitions(url: string, now?: Date): Promise<PartitionAction[]> {
  const client = new Client({ connectionString: url, application_name: "nbdb-maintain" });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT to_regprocedure('neuralblitz.run_partition_maintenance(timestamptz)') IS NOT NULL AS present");
    if (!rows[0].present) return [];
    const res = await client.query(
      "SELECT table_name, action, partition_name, rows_moved FROM neuralblitz.run_partition_maintenance(coalesce($1::timestamptz, now()))",
      [now ?? null],
    );
    return res.rows.map((r) => ({ table: r.table_name, action: r.action, partition: r.partition_name, rowsMoved: r.rows_moved === null ? null : Number(r.rows_moved) }));
  } finally {
    await client.end();
  }
}

/** One line per table and action, e.g. "metrics: created 8 partitions (moved 3 rows from default)". */
export function summarizePartitionActions(actions: readonly PartitionAction[]): string[] {
  const groups = new Map<string, PartitionAction[]>();
  for (const a of actions) groups.set(`${a.table}\t${a.action}`, [...(groups.get(`${a.table}\t${a.action}`) ?? []), a]);
  return [...groups.entries()].map(([key, list]) => {
    const [table, action] = key.split("\t");
    const moved = list.reduce((n, a) => n + (a.rowsMoved ?? 0), 0);
    return `${table}: ${action} ${list.length} partition${list.length === 1 ? "" : "s"}${moved ? ` (moved ${moved} rows from default)` : ""}`;
  });
}
