// The schema's maintenance on a schedule inside the database, by pg_cron where the server has it
// loaded (Debian's postgresql-15-cron locally, RDS's parameter group in prod; the official Docker
// image has none): hourly run_maintenance() and the audit sealer every minute, as nb_migrator. Run by a superuser (rds_superuser on
// RDS) in the database pg_cron serves; does nothing where pg_cron is not loaded. Idempotent.
import { DATABASE } from "../../schema/roles";

export const MAINTENANCE_JOB = "neuralblitz-maintenance";
export const MAINTENANCE_SCHEDULE = "7 * * * *";
/** The audit sealer: committed audit entries join the hash chain within a minute. */
export const SEAL_JOB = "neuralblitz-audit-seal";
export const SEAL_SCHEDULE = "* * * * *";

export function maintenanceScheduleSql(database: string = DATABASE): string {
  return `
DO $schedule$
BEGIN
  -- pg_cron lives in one database (cron.database_name): elsewhere there is nothing to schedule.
  IF NOT 'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
     OR current_setting('cron.database_name', true) IS DISTINCT FROM current_database() THEN
    RETURN;
  END IF;
  CREATE EXTENSION IF NOT EXISTS pg_cron;
  IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = '${MAINTENANCE_JOB}') THEN
    PERFORM cron.schedule_in_database('${MAINTENANCE_JOB}', '${MAINTENANCE_SCHEDULE}',
                                      $job$SELECT neuralblitz.run_maintenance('pg_cron')$job$, '${database}', 'nb_migrator');
  END IF;
  IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = '${SEAL_JOB}') THEN
    PERFORM cron.schedule_in_database('${SEAL_JOB}', '${SEAL_SCHEDULE}',
                                      $job$SELECT neuralblitz.seal_golden_dag()$job$, '${database}', 'nb_migrator');
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  -- Only a superuser (rds_superuser on RDS) may read these settings and create pg_cron.
  RAISE NOTICE 'maintenance not scheduled: % (schedule it as a superuser, or run nbdb maintain)', SQLERRM;
END
$schedule$;
`;
}
