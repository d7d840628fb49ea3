// Maintenance on a schedule inside the database, by pg_cron where the server has it (Debian's
// postgresql-15-cron locally, RDS in prod): hourly run_maintenance(), as nb_migrator, in a
// background worker. Needs a superuser (or rds_superuser) once, to create the extension.
import { Client } from "pg";
import { DATABASE } from "../../schema/roles";

export const MAINTENANCE_JOB = "neuralblitz-maintenance";
export const MAINTENANCE_SCHEDULE = "7 * * * *";

/** Schedules the job if pg_cron is loaded and the job is missing; returns what it did, or nothing. */
export async function ensureMaintenanceSchedule(superuserUrl: string): Promise<string | undefined> {
  const client = new Client({ connectionString: superuserUrl, application_name: "nbdb-schedule" });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT 'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) AS loaded,
              EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') AS installed`,
    );
    if (!rows[0].loaded) return undefined;
    if (!rows[0].installed) await client.query("CREATE EXTENSION pg_cron");
    const job = await client.query("SELECT 1 FROM cron.job WHERE jobname = $1", [MAINTENANCE_JOB]);
    if (job.rowCount) return undefined;
    await client.query("SELECT cron.schedule_in_database($1, $2, $3, $4, 'nb_migrator')", [
      MAINTENANCE_JOB,
      MAINTENANCE_SCHEDULE,
      "SELECT neuralblitz.run_maintenance('pg_cron')",
      DATABASE,
    ]);
    return `scheduled maintenance with pg_cron ('${MAINTENANCE_SCHEDULE}', job ${MAINTENANCE_JOB})`;
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
    const scheduled = await client.query(
      "SELECT to_regclass('cron.job') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') AS has_cron",
    );
    let isScheduled = false;
    if (scheduled.rows[0].has_cron) {
      isScheduled = ((await client.query("SELECT 1 FROM cron.job WHERE jobname = $1", [MAINTENANCE_JOB])).rowCount ?? 0) > 0;
    }
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
