// The schema's scheduled jobs, written once: hourly run_maintenance() and the audit sealer every
// minute, as nb_migrator. Where the server preloads pg_cron (Debian's postgresql-15-cron locally,
// RDS's parameter group in prod), pg_cron runs them (maintenanceScheduleSql, run by a superuser or
// rds_superuser in the database pg_cron serves); the official Docker image has no pg_cron, so the
// Docker stack runs the same jobs from a small scheduler container (schedulerLoopScript).
import { DATABASE } from "../../schema/roles";

export interface ScheduledJob {
  readonly name: string;
  /** cron syntax; the scheduler loop understands "* * * * *" and "<minute> * * * *". */
  readonly schedule: string;
  readonly command: string;
}

export const MAINTENANCE_JOB: ScheduledJob = {
  name: "neuralblitz-maintenance",
  schedule: "7 * * * *",
  command: "SELECT neuralblitz.run_maintenance('scheduler')",
};

/** The audit sealer: committed audit entries join the hash chain within a minute. */
export const SEAL_JOB: ScheduledJob = { name: "neuralblitz-audit-seal", schedule: "* * * * *", command: "SELECT neuralblitz.seal_golden_dag()" };

export const SCHEDULED_JOBS: readonly ScheduledJob[] = [MAINTENANCE_JOB, SEAL_JOB];

export function maintenanceScheduleSql(database: string = DATABASE): string {
  const schedule = SCHEDULED_JOBS.map(
    (j) => `  IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = '${j.name}') THEN
    PERFORM cron.schedule_in_database('${j.name}', '${j.schedule}', $job$${j.command}$job$, '${database}', 'nb_migrator');
  END IF;`,
  );
  return `
DO $schedule$
BEGIN
  -- pg_cron lives in one database (cron.database_name): elsewhere there is nothing to schedule.
  IF NOT 'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
     OR current_setting('cron.database_name', true) IS DISTINCT FROM current_database() THEN
    RETURN;
  END IF;
  CREATE EXTENSION IF NOT EXISTS pg_cron;
  -- The jobs run as nb_migrator, which may then read its own jobs (nbdb verify checks them).
  GRANT USAGE ON SCHEMA cron TO nb_migrator;
${schedule.join("\n")}
EXCEPTION WHEN insufficient_privilege THEN
  -- Only a superuser (rds_superuser on RDS) may read these settings and create pg_cron.
  RAISE NOTICE 'maintenance not scheduled: % (schedule it as a superuser, or run nbdb maintain)', SQLERRM;
END
$schedule$;
`;
}

/**
 * A POSIX shell loop that runs the jobs on their schedule with psql, for a server without pg_cron.
 * Connection from the libpq environment (PGHOST, PGUSER, PGPASSFILE, ...). A failing job (the
 * schema not there yet on a first deploy) is logged and tried again at its next time.
 */
export function schedulerLoopScript(): string {
  const steps = SCHEDULED_JOBS.map((j) => {
    const minute = j.schedule.split(" ")[0];
    const run = `psql -Xqt -c "${j.command}" >/dev/null || echo "job ${j.name} failed; next try at its next time" >&2`;
    return minute === "*" ? `  ${run}` : `  [ "$(date -u +%M)" = "${minute.padStart(2, "0")}" ] && { ${run}; }`;
  });
  return ["set -u", "while :; do", ...steps, "  sleep $((60 - $(date -u +%S | sed 's/^0//')))", "done"].join("\n") + "\n";
}
