-- Creates run_maintenance(), the scheduled upkeep of the schema: the roll-ups refreshed
-- CONCURRENTLY, the GoldenDAG sealer (which pg_cron also runs every minute), ANALYZE of the
-- partitions that changed and of their parents (autovacuum never analyzes a partitioned parent;
-- nb_owner's tables only: the audit trail is nb_audit's), and a row in maintenance_runs. One
-- transaction: an interrupted run leaves nothing half done.
-- Partitions are not made in it: creating or detaching one holds the parent's ACCESS EXCLUSIVE
-- lock to the end of its transaction, which here would stall the table's writers for the whole
-- run. run_maintenance_proc() (what pg_cron runs hourly) and `nbdb maintain` first run
-- partition_maintenance_step() in short transactions of their own, then this, passing the counts.
-- REINDEX CONCURRENTLY cannot run inside it: `nbdb maintain --reindex` does that.

-- Before the partition counts were parameters, it took only p_source.
DROP FUNCTION IF EXISTS neuralblitz.run_maintenance(text);

CREATE OR REPLACE FUNCTION neuralblitz.run_maintenance(
  p_source text DEFAULT 'manual', p_created integer DEFAULT 0, p_retired integer DEFAULT 0, p_moved bigint DEFAULT 0)
RETURNS neuralblitz.maintenance_runs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_started  timestamptz := clock_timestamp();
  v_created  integer := p_created;
  v_retired  integer := p_retired;
  v_moved    bigint := p_moved;
  v_analyzed text[] := '{}';
  v_rel      regclass;
  v_run      neuralblitz.maintenance_runs;
BEGIN
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
REVOKE EXECUTE ON FUNCTION neuralblitz.run_maintenance(text, integer, integer, bigint) FROM PUBLIC;

-- What the schedule runs hourly (CALL, as nb_migrator): each partition action in a short
-- transaction of its own that waits at most 200 ms for its lock (writers never queue behind it for
-- longer) and is tried again after a growing pause, for up to a minute; then run_maintenance().
-- A procedure, so that it can commit between steps; SECURITY INVOKER (PostgreSQL refuses
-- transaction control in SECURITY DEFINER procedures and with SET clauses): every name is
-- qualified, and it runs only functions whose EXECUTE is not PUBLIC's.
CREATE OR REPLACE PROCEDURE neuralblitz.run_maintenance_proc(p_source text DEFAULT 'scheduler')
LANGUAGE plpgsql
AS $$
DECLARE
  v_step     record;
  v_locking  integer;
  v_created  integer := 0;
  v_retired  integer := 0;
  v_moved    bigint := 0;
  v_tries    integer := 0;
  v_waiting_since timestamptz;
BEGIN
  LOOP
    v_locking := 0;
    BEGIN
      PERFORM pg_catalog.set_config('lock_timeout', '200ms', true);
      FOR v_step IN SELECT * FROM neuralblitz.partition_maintenance_step() LOOP
        CONTINUE WHEN v_step.action = 'kept in default';
        v_locking := v_locking + 1;
        IF v_step.action = 'created' THEN v_created := v_created + 1; ELSE v_retired := v_retired + 1; END IF;
        v_moved := v_moved + coalesce(v_step.rows_moved, 0);
      END LOOP;
    EXCEPTION WHEN lock_not_available THEN
      v_locking := -1;
    END;
    IF v_locking = -1 THEN
      v_waiting_since := coalesce(v_waiting_since, pg_catalog.clock_timestamp());
      IF pg_catalog.clock_timestamp() - v_waiting_since > interval '1 minute' THEN
        RAISE WARNING 'partition maintenance gave up after % tries: another session held a lock on a partitioned table for a minute; the next run tries again', v_tries;
        EXIT;
      END IF;
      v_tries := v_tries + 1;
      PERFORM pg_catalog.pg_sleep(least(2.0, 0.1 * power(2, least(v_tries, 5))));
    ELSE
      v_waiting_since := NULL;
      v_tries := 0;
    END IF;
    COMMIT;
    EXIT WHEN v_locking = 0;
  END LOOP;
  PERFORM neuralblitz.run_maintenance(p_source, v_created, v_retired, v_moved);
END
$$;
REVOKE EXECUTE ON PROCEDURE neuralblitz.run_maintenance_proc(text) FROM PUBLIC;
