// The maintenance schedule of the local stack (infra/topology/maintenanceSchedule.ts, which the
// Pulumi stacks run too) and what `nbdb status` shows of it.
import { Client } from "pg";
import { withClient } from "../db";
import { JOB_ROLE, MAINTENANCE_JOB, SCHEDULED_JOBS, SEAL_JOB, cronAccessSql, maintenanceScheduleSql } from "../../infra/topology/maintenanceSchedule";

async function jobExists(client: Client, job: string = MAINTENANCE_JOB.name, command?: string): Promise<boolean> {
  const { rows } = await client.query("SELECT to_regclass('cron.job') IS NOT NULL AS has_cron");
  return rows[0].has_cron && ((await client.query("SELECT 1 FROM cron.job WHERE jobname = $1 AND command = coalesce($2, command)", [job, command ?? null])).rowCount ?? 0) > 0;
}

/** Every job is scheduled as the jobs' role with its current schedule and command. */
async function jobsCurrent(client: Client): Promise<boolean> {
  if (!(await jobExists(client))) return false;
  const { rows } = await client.query("SELECT jobname, schedule, command FROM cron.job WHERE username = $1", [JOB_ROLE]);
  return SCHEDULED_JOBS.every((j) => rows.some((r) => r.jobname === j.name && r.schedule === j.schedule && r.command === j.command));
}

/**
 * Where the server preloads pg_cron and a job is missing: the superuser makes pg_cron usable by the
 * jobs' role, which then schedules the jobs as itself (least privilege; the same SQL the Pulumi
 * stacks run on RDS). Says so when it did; a server without pg_cron (it is optional locally) is left
 * to `nbdb maintain`.
 */
export async function ensureMaintenanceSchedule(urls: { readonly admin: string; readonly migrator: string }): Promise<string | undefined> {
  const needed = await withClient(
    urls.admin,
    async (admin) => {
      const { rows } = await admin.query(
        "SELECT 'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) AND current_setting('cron.database_name', true) = current_database() AS cron",
      );
      if (!rows[0].cron || (await jobsCurrent(admin))) return false;
      await admin.query(cronAccessSql());
      return true;
    },
    "nbdb-schedule",
  );
  if (!needed) return undefined;
  await withClient(urls.migrator, (migrator) => migrator.query(maintenanceScheduleSql()), "nbdb-schedule");
  return `scheduled maintenance ('${MAINTENANCE_JOB.schedule}') and the audit sealer ('${SEAL_JOB.schedule}') with pg_cron, as ${JOB_ROLE}`;
}

export interface MaintenanceStatus {
  readonly scheduled: boolean;
  readonly lastRun: { source: string; startedAt: string; finishedAt: string; partitionsCreated: number; partitionsRetired: number; rowsMoved: number } | null;
}

/** When maintenance last ran (by any means) and whether pg_cron holds its job. */
export async function maintenanceStatus(url: string): Promise<MaintenanceStatus> {
  return withClient(url, async (client) => {
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
  }, "nbdb-status");
}
