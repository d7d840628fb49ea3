// The scheduled jobs, written once for every platform: hourly run_maintenance() and the audit
// sealer every minute, as nb_migrator, run by pg_cron wherever the servers run (Debian's
// postgresql-<major>-cron locally and in the Docker platform's image, RDS's parameter group in prod):
// the administrator makes pg_cron usable by the jobs' role (cronAccessSql), and that role schedules
// them as itself (maintenanceScheduleSql), which needs no superuser; scheduling for ANOTHER role
// does (pg_cron raises XX000 for a non-superuser, e.g. the RDS master user). Beside them, the backup
// schedule (BACKUP_JOBS) of the platforms that run pgBackRest themselves (infra/topology/pgbackrest.ts).
import { DATABASE } from "../../schema/roles";

export interface ScheduledJob {
  readonly name: string;
  /** cron syntax (UTC), as pg_cron and cron read it. */
  readonly schedule: string;
  readonly command: string;
}

export const MAINTENANCE_JOB: ScheduledJob = {
  name: "neuralblitz-maintenance",
  schedule: "7 * * * *",
  // A procedure: it commits after each partition it creates, so no writer waits behind a long transaction.
  command: "CALL neuralblitz.run_maintenance_proc('scheduler')",
};

/** The audit sealer: committed audit entries join the hash chain within a minute. */
export const SEAL_JOB: ScheduledJob = { name: "neuralblitz-audit-seal", schedule: "* * * * *", command: "SELECT neuralblitz.seal_golden_dag()" };

export const SCHEDULED_JOBS: readonly ScheduledJob[] = [MAINTENANCE_JOB, SEAL_JOB];

/** The role the jobs run as, which schedules them. */
export const JOB_ROLE = "nb_migrator";

/**
 * Run by the administrator (a superuser locally, the RDS master user, a member of rds_superuser, on
 * RDS) in the database pg_cron serves: creates pg_cron there and lets the jobs' role use it. A server
 * that does not preload pg_cron fails here with what to do, never silently.
 */
export function cronAccessSql(database: string = DATABASE): string {
  return `
DO $cron_access$
BEGIN
  CREATE EXTENSION IF NOT EXISTS pg_cron;
  GRANT USAGE ON SCHEMA cron TO ${JOB_ROLE};
  -- pg_cron takes EXECUTE on its functions from PUBLIC; each one still acts only on the caller's own jobs.
  GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA cron TO ${JOB_ROLE};
EXCEPTION WHEN OTHERS THEN
  RAISE EXCEPTION 'cannot make pg_cron usable by ${JOB_ROLE} in database %: % (SQLSTATE %)', current_database(), SQLERRM, SQLSTATE
    USING HINT = 'The server must preload pg_cron (shared_preload_libraries) with cron.database_name = ${database}; on RDS the stack''s parameter group sets both, and they take effect when the instance reboots (aws rds reboot-db-instance). Then run pulumi up again.';
END
$cron_access$;
`;
}

/**
 * Run AS the jobs' role (JOB_ROLE): schedules every job as itself in `database`. pg_cron keys jobs
 * by name and user, so running it again updates them in place. Any failure is an error that names
 * what to do; nothing is skipped silently.
 */
export function maintenanceScheduleSql(database: string = DATABASE): string {
  const schedule = SCHEDULED_JOBS.map((j) => `  PERFORM cron.schedule_in_database('${j.name}', '${j.schedule}', $job$${j.command}$job$, '${database}');`);
  return `
DO $schedule$
BEGIN
  IF current_user <> '${JOB_ROLE}' THEN
    RAISE EXCEPTION 'the scheduled jobs must be scheduled by ${JOB_ROLE}, the role they run as, not by %', current_user;
  END IF;
  IF to_regnamespace('cron') IS NULL OR NOT has_schema_privilege('cron', 'USAGE')
     OR NOT has_function_privilege('cron.schedule_in_database(text,text,text,text,text,boolean)', 'EXECUTE') THEN
    RAISE EXCEPTION 'pg_cron is not usable by % in database %', current_user, current_database()
      USING HINT = 'The administrator runs cronAccessSql() (infra/topology/maintenanceSchedule.ts) first: the database layer does on RDS, nbdb up locally.';
  END IF;
  BEGIN
${schedule.map((l) => "  " + l).join("\n")}
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'scheduling maintenance and the audit sealer with pg_cron failed: % (SQLSTATE %)', SQLERRM, SQLSTATE
      USING HINT = 'Until it is fixed nothing runs them: fix the cause and deploy again, or run nbdb maintain by hand meanwhile.';
  END;
END
$schedule$;
`;
}

/** A pgBackRest backup on a schedule: what it takes (full, or incremental since the last backup). */
export interface BackupJob {
  readonly name: string;
  /** cron syntax (UTC). */
  readonly schedule: string;
  readonly type: "full" | "incr";
}

/**
 * The backup schedule where the platform runs pgBackRest on a schedule (the Docker platform's backup
 * container): a full backup on Sunday at 01:00, an incremental every other night at 01:00; two full
 * backups are kept (pgbackrest.ts, DEFAULT_RETENTION_FULL). docs/backup.md suggests the same for a
 * local stack's crontab.
 */
export const BACKUP_JOBS: readonly BackupJob[] = [
  { name: "neuralblitz-backup-full", schedule: "0 1 * * 0", type: "full" },
  { name: "neuralblitz-backup-incr", schedule: "0 1 * * 1-6", type: "incr" },
];
