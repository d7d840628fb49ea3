// The maintenance schedule of the local stack (infra/topology/maintenanceSchedule.ts, which the
// Pulumi stacks run too) and what `nbdb status` shows of it.
import { Client } from "pg";
import { MAINTENANCE_JOB, SEAL_JOB, maintenanceScheduleSql } from "../../infra/topology/maintenanceSchedule";

async function jobExists(client: Client, job: string = MAINTENANCE_JOB.name): Promise<boolean> {
  const { rows } = await client.query("SELECT to_regclass('cron.job') IS NOT NULL AS has_cron");
  return rows[0].has_cron && ((await client.query("SELECT 1 FROM cron.job WHERE jobname = $1", [job])).rowCount ?? 0) > 0;
}

/** Schedules the job where pg_cron is loaded and the job is missing; says so when it did. */
export async function ensureMaintenanceSchedule(superuserUrl: string): Promise<string | undefined> {
  const client = new Client({ connectionString: superuserUrl, application_name: "nbdb-schedule" });
  await client.connect();
  try {
    if ((await jobExists(client)) && (await jobExists(client, SEAL_JOB.name))) {
      // A stack scheduled before nb_migrator could read its jobs.
      const { rows } = await client.query("SELECT NOT pg_catalog.has_schema_privilege('nb_migrator', 'cron', 'USAGE') AS missing");
      if (rows[0].missing) await client.query("GRANT USAGE ON SCHEMA cron TO nb_migrator");
      return undefined;
    }
    await client.query(maintenanceScheduleSql());
    return (await jobExists(client, SEAL_JOB.name))
      ? `scheduled maintenance ('${MAINTENANCE_JOB.schedule}') and the audit sealer ('${SEAL_JOB.schedule}') with pg_cron`
      : undefined;
  } finally {
    await client.end();
  }
}

export interface MaintenanceStatus {
  readonly scheduled: boolean;
  readonly lastRun: { source: string; startedAt: string; finishedAt: string; partitionsCreated: number; partitionsRetired: number; rowsMoved: number } | null;
}

/** When maintenance last ran (by any means) and whether pg_cron holds its job. */
export async function maintenanceStatus(url: string): Promise<MaintenanceStatus> {
  const client = new Client({ connectionString: url, application_name: "nbdb-status" });
  await client.connect();
  try {
    const isScheduled = await jobExists(client);
    if (!(await client.query("SELECT to_regclass('neuralblitz.maintenance_runs') IS NOT NULL AS present")).rows[0].present) return { scheduled: isScheduled, lastRun: null };
    const { rows } = await client.query(
      `SELECT source, started_at, finished_at, partitions_created, partitions_retired, rows_moved
         FROM neuralblitz.maintenance_runs ORDER BY started_at DESC LIMIT 1`,
    );
    const r = rows[0];
    return {
      scheduled: isScheduled,
      lastRun: r
        ? { source: r.source, startedAt: r.started_at.toISOString(), finishedAt: r.finished_at.toISOString(), partitionsCreated: r.partitions_created, partitionsRetired: r.partitions_retired, rowsMoved: Number(r.rows_moved) }
        : null,
    };
  } finally {
    await client.end();
  }
}
