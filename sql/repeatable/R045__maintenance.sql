-- Creates run_maintenance(), the scheduled upkeep of the schema, run hourly by pg_cron where the
-- server has it and by `nbdb maintain`: partitions ahead, strays moved, retention
-- (run_partition_maintenance), the roll-ups refreshed CONCURRENTLY, and ANALYZE of the
-- partitions that changed and of their parents (autovacuum never analyzes a partitioned parent;
-- nb_owner's tables only: the audit trail is nb_audit's),
-- and the GoldenDAG sealer (which pg_cron also runs every minute).
-- Each run is recorded in maintenance_runs. One transaction: an interrupted run leaves nothing
-- half done. REINDEX CONCURRENTLY cannot run inside it: `nbdb maintain --reindex` does that.

CREATE OR REPLACE FUNCTION neuralblitz.run_maintenance(p_source text DEFAULT 'manual')
RETURNS neuralblitz.maintenance_runs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_started  timestamptz := clock_timestamp();
  v_created  integer := 0;
  v_retired  integer := 0;
  v_moved    bigint := 0;
  v_analyzed text[] := '{}';
  v_rel      regclass;
  v_run      neuralblitz.maintenance_runs;
BEGIN
  SELECT count(*) FILTER (WHERE action = 'created'), count(*) FILTER (WHERE action IN ('detached', 'dropped')), coalesce(sum(rows_moved), 0)
    INTO v_created, v_retired, v_moved
    FROM neuralblitz.run_partition_maintenance();

  PERFORM neuralblitz.refresh_rollups();
  PERFORM neuralblitz.seal_golden_dag();

  -- Partitions with a tenth of their rows changed since their last ANALYZE, then their parents.
  FOR v_rel IN
    WITH changed AS (
      SELECT s.relid
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
       WHERE s.schemaname = 'neuralblitz' AND c.relispartition AND c.relowner = 'nb_owner'::regrole
         AND s.n_mod_since_analyze > greatest(1000, s.n_live_tup / 10)
    )
    SELECT relid::regclass FROM changed
    UNION
    SELECT i.inhparent::regclass FROM changed JOIN pg_inherits i ON i.inhrelid = changed.relid
  LOOP
    EXECUTE format('ANALYZE %s', v_rel);
    v_analyzed := v_analyzed || v_rel::text;
  END LOOP;

  INSERT INTO neuralblitz.maintenance_runs (source, started_at, finished_at, partitions_created, partitions_retired, rows_moved, tables_analyzed)
  VALUES (p_source, v_started, clock_timestamp(), v_created, v_retired, v_moved, v_analyzed)
  RETURNING * INTO v_run;
  RETURN v_run;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.run_maintenance(text) FROM PUBLIC;
