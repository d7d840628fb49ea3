// `nbdb maintain`: partitions ahead, strays moved and retention, one action per short transaction
// (partitions.ts), then run_maintenance() (roll-ups refreshed CONCURRENTLY, changed partitions
// analyzed; one transaction, recorded in maintenance_runs), then the index bloat report with the REINDEX CONCURRENTLY it would run
// (`--reindex` runs it). Interrupted, it leaves nothing half done: the maintenance transaction
// rolls back (the connection is checked every second), and the leftovers of an interrupted
// REINDEX CONCURRENTLY (invalid *_ccnew/_ccold indexes) are dropped by the next run.
import { Client } from "pg";
import { withClient } from "../db";
import { maintainPartitions } from "../local/partitions";

export interface BloatedIndex {
  readonly index: string;
  readonly bytes: number;
  /** Estimated share of the index that is free space, 0..1. */
  readonly bloat: number;
  readonly reindex: string;
}

export interface MaintainReport {
  readonly partitionsCreated: number;
  readonly partitionsRetired: number;
  readonly rowsMoved: number;
  readonly analyzed: string[];
  readonly droppedLeftovers: string[];
  readonly bloated: BloatedIndex[];
  readonly reindexed: string[];
}

const MIN_BLOAT = 0.3;
const MIN_INDEX_BYTES = 1024 * 1024;

// A B-tree's expected size from its row count and the average width of its key columns
// (pg_stats), at the default fill factor; what exceeds it is estimated bloat. An estimate in the
// spirit of the widely used ioguix query, without pgstattuple (not installable everywhere).
const BLOAT_SQL = `
  WITH idx AS (
    SELECT i.indexrelid, i.indrelid, c.relpages, c.reltuples, i.indkey
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
      -- Only nb_owner's: nb_migrator may not REINDEX the audit trail's (nb_audit's) indexes.
      JOIN pg_class t ON t.oid = i.indrelid AND t.relowner = 'nb_owner'::regrole
     WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind = 'i' AND i.indisvalid
       AND pg_relation_size(i.indexrelid) >= $1 AND NOT (0 = ANY (i.indkey::int2[]))
  ), widths AS (
    SELECT idx.indexrelid, sum(coalesce(s.avg_width, 8)) AS key_width
      FROM idx
      JOIN pg_attribute a ON a.attrelid = idx.indrelid AND a.attnum = ANY (idx.indkey::int2[])
      LEFT JOIN pg_stats s ON s.schemaname = 'neuralblitz' AND s.tablename = (SELECT relname FROM pg_class WHERE oid = idx.indrelid) AND s.attname = a.attname
     GROUP BY idx.indexrelid
  )
  SELECT idx.indexrelid::regclass::text AS index, pg_relation_size(idx.indexrelid) AS bytes,
         greatest(0, 1 - (ceil(idx.reltuples * (ceil((8 + w.key_width) / 8.0) * 8 + 4) / (8152 * 0.9)) + 1) / greatest(idx.relpages, 1)) AS bloat
    FROM idx JOIN widths w USING (indexrelid)
   WHERE idx.reltuples > 0`;

async function dropReindexLeftovers(client: Client): Promise<string[]> {
  const { rows } = await client.query(
    `SELECT c.oid::regclass::text AS index FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE c.relnamespace = 'neuralblitz'::regnamespace AND NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$'`,
  );
  for (const r of rows) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${r.index}`);
  return rows.map((r) => r.index);
}

export async function bloatedIndexes(client: Client): Promise<BloatedIndex[]> {
  const { rows } = await client.query(BLOAT_SQL, [MIN_INDEX_BYTES]);
  return rows
    .filter((r) => Number(r.bloat) >= MIN_BLOAT)
    .map((r) => ({ index: r.index, bytes: Number(r.bytes), bloat: Number(r.bloat), reindex: `REINDEX INDEX CONCURRENTLY ${r.index}` }))
    .sort((a, b) => b.bytes * b.bloat - a.bytes * a.bloat);
}

/** Maintenance as nb_migrator (direct to the primary: REINDEX CONCURRENTLY needs a session). */
export async function maintain(migratorUrl: string, opts: { reindex?: boolean } = {}): Promise<MaintainReport> {
  return withClient(migratorUrl, async (client) => {
    // A killed client gets its transaction rolled back within a second, not when it ends.
    await client.query("SET client_connection_check_interval = '1s'");
    await client.query("SET ROLE nb_owner");
    const droppedLeftovers = await dropReindexLeftovers(client);
    // Partitions first, each in a short transaction of its own with a short lock_timeout: so the
    // one long transaction below (roll-ups, sealing, ANALYZE) finds none to create and never holds
    // a parent's ACCESS EXCLUSIVE lock.
    const steps = await maintainPartitions(migratorUrl);
    const created = steps.filter((a) => a.action === "created").length;
    const retired = steps.filter((a) => a.action === "detached" || a.action === "dropped").length;
    const moved = steps.reduce((n, a) => n + (a.rowsMoved ?? 0), 0);
    const { rows } = await client.query("SELECT * FROM neuralblitz.run_maintenance('nbdb', $1, $2, $3)", [created, retired, moved]);
    const run = rows[0];
    const bloated = await bloatedIndexes(client);
    const reindexed: string[] = [];
    if (opts.reindex) {
      for (const b of bloated) {
        await client.query(b.reindex);
        reindexed.push(b.index);
      }
    }
    return {
      partitionsCreated: run.partitions_created,
      partitionsRetired: run.partitions_retired,
      rowsMoved: Number(run.rows_moved),
      analyzed: run.tables_analyzed,
      droppedLeftovers,
      bloated,
      reindexed,
    };
  }, "nbdb-maintain");
}
