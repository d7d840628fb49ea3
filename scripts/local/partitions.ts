// Partition upkeep through neuralblitz.partition_maintenance_step() (R040 bundle): partitions ahead,
// strays moved out of DEFAULT partitions, retention, one action per short transaction. Run by
// `nbdb up` and `nbdb maintain`.
import { Client } from "pg";
import { withClient, withTransaction } from "../db";

export interface PartitionAction {
  readonly table: string;
  /** "kept in default": strays of an append-only table, which is never rewritten. */
  readonly action: "created" | "detached" | "dropped" | "kept in default";
  readonly partition: string;
  readonly rowsMoved: number | null;
}

/** How long one step waits for its lock on a parent: writers of that table queue behind it no longer. */
export const PARTITION_LOCK_TRY_MS = 200;
/** How long in all a step may keep trying (then maintenance gives up on it, naming the lock's holder). */
const STEP_RETRY_LIMIT_MS = 60_000;
const PAUSES_MS = [100, 200, 400, 800, 1600, 2000];

async function blockersOf(client: Client, pid: number): Promise<string> {
  const { rows } = await client.query(
    `SELECT pid, application_name, usename, state FROM pg_catalog.pg_stat_activity
      WHERE pid <> pg_catalog.pg_backend_pid() AND pid IN (
        SELECT l.pid FROM pg_catalog.pg_locks l
         WHERE l.granted AND l.relation IN (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind IN ('p', 'r')))
        AND pid <> $1`,
    [pid],
  );
  return rows.map((r) => `pid ${r.pid} (application '${r.application_name || "?"}', user ${r.usename ?? "?"}${r.state ? `, ${r.state}` : ""})`).join(", ") || "a session that let go meanwhile";
}

/**
 * Runs partition maintenance as of `now`, one action per transaction: each creation or detach
 * holds its parent's ACCESS EXCLUSIVE lock only for its own short transaction, waits at most
 * PARTITION_LOCK_TRY_MS for it (so writers never queue behind it for longer), and on a lock
 * timeout tries again after a pause, up to a minute. Nothing when the schema does not have it (yet).
 */
export async function maintainPartitions(url: string, now?: Date): Promise<PartitionAction[]> {
  return withClient(url, async (client) => {
    const { rows } = await client.query("SELECT to_regprocedure('neuralblitz.partition_maintenance_step(timestamptz)') IS NOT NULL AS present");
    if (!rows[0].present) return [];
    const [{ pid }] = (await client.query("SELECT pg_catalog.pg_backend_pid() AS pid")).rows;
    const actions: PartitionAction[] = [];
    let failedSince: number | undefined;
    let tries = 0;
    for (;;) {
      let step: PartitionAction[];
      try {
        const res = await withTransaction(client, async () => {
          await client.query("SELECT pg_catalog.set_config('lock_timeout', $1, true)", [`${PARTITION_LOCK_TRY_MS}ms`]);
          return client.query(
            "SELECT table_name, action, partition_name, rows_moved FROM neuralblitz.partition_maintenance_step(coalesce($1::timestamptz, now()))",
            [now ?? null],
          );
        });
        step = res.rows.map((r) => ({ table: r.table_name, action: r.action, partition: r.partition_name, rowsMoved: r.rows_moved === null ? null : Number(r.rows_moved) }));
      } catch (e) {
        if ((e as { code?: string }).code !== "55P03") throw e;
        failedSince ??= Date.now();
        if (Date.now() - failedSince > STEP_RETRY_LIMIT_MS) {
          throw new Error(
            `partition maintenance could not lock a partitioned table for ${Math.round(STEP_RETRY_LIMIT_MS / 1000)} s (${tries} tries of at most ${PARTITION_LOCK_TRY_MS} ms each); ` +
              `sessions holding locks on neuralblitz tables: ${await blockersOf(client, pid)}. Let them finish and run it again (the partitions premade earlier still take the new rows).`,
          );
        }
        await new Promise((r) => setTimeout(r, PAUSES_MS[Math.min(tries++, PAUSES_MS.length - 1)]));
        continue;
      }
      failedSince = undefined;
      tries = 0;
      const locking = step.filter((a) => a.action !== "kept in default");
      for (const a of step) if (!actions.some((b) => b.table === a.table && b.action === a.action && b.partition === a.partition)) actions.push(a);
      if (locking.length === 0) return actions;
    }
  }, "nbdb-maintain");
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
