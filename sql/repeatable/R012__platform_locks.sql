-- Creates take_platform_lock(name, wait): the platform's jobs' mutual exclusion, out of nb_app's reach
-- and bounded. It locks the row of neuralblitz.platform_locks (V020) until the caller's transaction
-- ends, waiting at most p_wait (polling, so no lock queue forms behind a holder); then it fails with SQLSTATE 55P03 naming the session that holds it
-- (pid, role, application, since). Only nb_owner (and its members: nb_migrator) may call it.
CREATE OR REPLACE FUNCTION neuralblitz.take_platform_lock(p_name text, p_wait interval) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_deadline timestamptz := pg_catalog.clock_timestamp() + p_wait;
  v_holder   record;
  v_xmax     xid;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM neuralblitz.platform_locks WHERE name = p_name) THEN
    RAISE EXCEPTION 'no platform lock named %', p_name USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Platform locks are the rows of neuralblitz.platform_locks (V020).';
  END IF;
  -- SKIP LOCKED in a loop rather than a lock_timeout in an exception block: the lock then belongs to
  -- the caller's transaction itself, whose xid (the row's xmax) a waiter can name in pg_locks.
  LOOP
    PERFORM 1 FROM neuralblitz.platform_locks WHERE name = p_name FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
      RETURN;
    END IF;
    EXIT WHEN pg_catalog.clock_timestamp() >= v_deadline;
    PERFORM pg_catalog.pg_sleep(0.05);
  END LOOP;
  SELECT l.xmax INTO v_xmax FROM neuralblitz.platform_locks l WHERE l.name = p_name;
  SELECT a.pid, a.usename, a.application_name, COALESCE(a.xact_start, a.backend_start) AS since
    INTO v_holder
    FROM pg_catalog.pg_locks k JOIN pg_catalog.pg_stat_activity a ON a.pid = k.pid
   WHERE k.locktype = 'transactionid' AND k.transactionid = v_xmax AND k.granted
   LIMIT 1;
  RAISE EXCEPTION 'the % lock is still held after %: pid %, role %, application ''%'', since %',
      p_name, p_wait, COALESCE(v_holder.pid::text, '?'), COALESCE(v_holder.usename::text, '?'),
      COALESCE(v_holder.application_name, '?'), COALESCE(v_holder.since::text, 'unknown')
    USING ERRCODE = 'lock_not_available',
          HINT = pg_catalog.format('Let that job finish and run again; if it is gone but its session lingers, end it with SELECT pg_terminate_backend(%s).', COALESCE(v_holder.pid::text, '<pid>'));
END
$$;

REVOKE EXECUTE ON FUNCTION neuralblitz.take_platform_lock(text, interval) FROM PUBLIC;
