-- Creates run_partition_maintenance(): for each table in partition_policies it creates the
-- partitions from the current period through `premake` periods ahead, creates a partition for any
-- period whose rows landed in the DEFAULT partition and moves them there, and detaches (renamed
-- <partition>_archived) or drops partitions older than the retention. It does what pg_partman's
-- run_maintenance() does for native range partitioning, without the extension, so it runs unchanged
-- wherever the schema does (no superuser needed to install it). Idempotent; serialized by a
-- row lock nb_app cannot take (take_platform_lock, R012). Partition names: <table>_pYYYYMMDD (day), <table>_pIYYYwIW (ISO week),
-- <table>_pYYYYMM (month); bounds are in UTC.
-- Append-only tables are never rewritten, not even by maintenance: their strays stay in DEFAULT,
-- and no partition is made for a period that has some. The audit trail, owned by nb_audit, gets its
-- partitions from its own neuralblitz.golden_dag_premake() (sql/admin/golden_dag_trail.sql), the
-- same way.
-- Creating or detaching a partition takes ACCESS EXCLUSIVE on the parent until its transaction
-- ends, and every writer of that table waits behind it: partition_maintenance_step() does one such
-- action and returns, so callers (`nbdb maintain`, `nbdb up`, run_maintenance_proc()) run each in a
-- short transaction of its own with a short lock_timeout, and try again later when it expires.

CREATE OR REPLACE FUNCTION neuralblitz.partition_name(p_table text, p_period text, p_start timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
  SELECT p_table || '_p' || to_char(p_start, CASE p_period WHEN 'day' THEN 'YYYYMMDD' WHEN 'week' THEN 'IYYY"w"IW' ELSE 'YYYYMM' END)
$$;

-- Refuses any rewrite of an append-only table, for every role but a superuser (who can skip
-- triggers; verify_golden_dag() is what catches that).
CREATE OR REPLACE FUNCTION neuralblitz.refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege', HINT = 'Audit entries are never changed; partitions may be archived with neuralblitz.archive_golden_dag_partition().';
END
$$;

-- Make a table append-only even for its owner: privileges first, then a trigger for TRUNCATE (the
-- row-level UPDATE/DELETE triggers of a partitioned table reach its partitions by themselves).
CREATE OR REPLACE FUNCTION neuralblitz.seal_append_only(p_table regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM nb_owner', p_table);
  EXECUTE format('CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.refuse_rewrite()', p_table);
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.seal_append_only(regclass) FROM PUBLIC;

-- A partition is read and written through its parent only: row-level security and grants are
-- checked on the parent, so whatever default privileges gave a partition is taken back.
CREATE OR REPLACE FUNCTION neuralblitz.reach_only_through_parent(p_parent regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  g record;
BEGIN
  FOR g IN SELECT c.oid::regclass AS partition, a.grantee, string_agg(a.privilege_type, ', ') AS privileges
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid, aclexplode(c.relacl) a
            WHERE i.inhparent = p_parent AND a.grantee <> c.relowner
            GROUP BY c.oid, a.grantee LOOP
    EXECUTE format('REVOKE %s ON %s FROM %s', g.privileges, g.partition,
                   CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.reach_only_through_parent(regclass) FROM PUBLIC;

-- All of it in one transaction (p_limit NULL), or stop after p_limit actions that lock a parent
-- (created, detached, dropped).
CREATE OR REPLACE FUNCTION neuralblitz.partition_maintenance(p_now timestamptz, p_limit integer)
RETURNS TABLE (table_name text, action text, partition_name text, rows_moved bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  v_done    integer := 0;
  pol       record;
  v_parent  regclass;
  v_default text;
  v_key     text;
  v_step    interval;
  v_start   timestamptz;
  v_starts  timestamptz[];
  v_strays  timestamptz[];
  v_name    text;
  v_moved   bigint;
  -- Retention counts from today at the latest: a date in the future must never retire today's data.
  v_retire_before timestamptz;
  part      record;
BEGIN
  -- A row lock nb_app cannot take (R012), waited for at most 30 s, naming its holder on failure.
  PERFORM neuralblitz.take_platform_lock('maintenance', '30 seconds');

  FOR pol IN SELECT * FROM neuralblitz.partition_policies ORDER BY 1 LOOP
    v_parent := format('neuralblitz.%I', pol.table_name)::regclass;
    IF pol.table_name = 'golden_dag_audit' THEN
      -- The trail belongs to nb_audit: its own function makes its partitions (strays stay in DEFAULT).
      RETURN QUERY SELECT pol.table_name, g.action, g.partition_name, 0::bigint FROM neuralblitz.golden_dag_premake(p_now, pol.premake) g;
      CONTINUE;
    END IF;
    v_default := pol.table_name || '_default';
    SELECT a.attname INTO v_key
      FROM pg_partitioned_table pt
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
     WHERE pt.partrelid = v_parent;
    v_step := ('1 ' || pol.period)::interval;

    -- Periods to hold: the current one, `premake` ahead, and any with rows in DEFAULT. New rows
    -- for DEFAULT wait until the move is done, so none can slip in between and block the partition.
    IF NOT pol.append_only THEN
      EXECUTE format('LOCK TABLE neuralblitz.%I IN EXCLUSIVE MODE', v_default);
    END IF;
    EXECUTE format('SELECT array_agg(DISTINCT date_trunc(%L, %I)) FROM neuralblitz.%I', pol.period, v_key, v_default)
       INTO v_strays;
    v_strays := coalesce(v_strays, '{}');
    v_starts := v_strays || ARRAY(SELECT date_trunc(pol.period, p_now) + v_step * i FROM generate_series(0, pol.premake) AS i);

    FOR v_start IN SELECT DISTINCT s FROM unnest(v_starts) AS s ORDER BY 1 LOOP
      v_name := neuralblitz.partition_name(pol.table_name, pol.period, v_start);
      CONTINUE WHEN EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                             WHERE i.inhparent = v_parent AND c.relname = v_name);
      IF v_start = ANY (v_strays) AND pol.append_only THEN
        table_name := pol.table_name; action := 'kept in default'; partition_name := v_name; rows_moved := 0;
        RETURN NEXT;
        CONTINUE;
      END IF;
      v_moved := 0;
      IF v_start = ANY (v_strays) THEN
        -- Rows of this period in DEFAULT block the new partition: set them aside, create, put back.
        EXECUTE format('CREATE TEMP TABLE nb_moving (LIKE neuralblitz.%I) ON COMMIT DROP', pol.table_name);
        EXECUTE format('WITH moved AS (DELETE FROM neuralblitz.%I WHERE %I >= %L AND %I < %L RETURNING *)
                        INSERT INTO nb_moving SELECT * FROM moved',
                       v_default, v_key, v_start, v_key, v_start + v_step);
        GET DIAGNOSTICS v_moved = ROW_COUNT;
      END IF;
      EXECUTE format('CREATE TABLE neuralblitz.%I PARTITION OF neuralblitz.%I FOR VALUES FROM (%L) TO (%L)',
                     v_name, pol.table_name, v_start, v_start + v_step);
      IF v_start = ANY (v_strays) THEN
        -- Into the partition itself: the rows are already vetted, the parent's row-level security
        -- would hide them from the owner.
        EXECUTE format('INSERT INTO neuralblitz.%I OVERRIDING SYSTEM VALUE SELECT * FROM nb_moving', v_name);
        DROP TABLE nb_moving;
      END IF;
      IF pol.append_only THEN
        PERFORM neuralblitz.seal_append_only(format('neuralblitz.%I', v_name)::regclass);
      END IF;
      table_name := pol.table_name; action := 'created'; partition_name := v_name; rows_moved := v_moved;
      RETURN NEXT;
      v_done := v_done + 1;
      IF v_done >= p_limit THEN
        PERFORM neuralblitz.reach_only_through_parent(v_parent);
        RETURN;
      END IF;
    END LOOP;
    PERFORM neuralblitz.reach_only_through_parent(v_parent);

    CONTINUE WHEN pol.retention IS NULL;
    v_retire_before := least(p_now, now()) - pol.retention;
    FOR part IN
      SELECT c.relname,
             substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = v_parent AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
       ORDER BY 2
    LOOP
      EXIT WHEN part.upper_bound > v_retire_before;
      EXECUTE format('ALTER TABLE neuralblitz.%I DETACH PARTITION neuralblitz.%I', pol.table_name, part.relname);
      IF pol.retention_action = 'drop' THEN
        EXECUTE format('DROP TABLE neuralblitz.%I', part.relname);
        action := 'dropped';
        partition_name := part.relname;
      ELSE
        -- Renamed, so a stray of that period can later get a partition of the usual name.
        EXECUTE format('ALTER TABLE neuralblitz.%I RENAME TO %I', part.relname, part.relname || '_archived');
        action := 'detached';
        partition_name := part.relname || '_archived';
      END IF;
      table_name := pol.table_name; rows_moved := NULL;
      RETURN NEXT;
      v_done := v_done + 1;
      EXIT WHEN v_done >= p_limit;
    END LOOP;
    EXIT WHEN v_done >= p_limit;
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.partition_maintenance(timestamptz, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION neuralblitz.run_partition_maintenance(p_now timestamptz DEFAULT now())
RETURNS TABLE (table_name text, action text, partition_name text, rows_moved bigint)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM neuralblitz.partition_maintenance(p_now, NULL)
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.run_partition_maintenance(timestamptz) FROM PUBLIC;

-- One action that locks a parent (or none left: only 'kept in default' rows, or no row at all).
CREATE OR REPLACE FUNCTION neuralblitz.partition_maintenance_step(p_now timestamptz DEFAULT now())
RETURNS TABLE (table_name text, action text, partition_name text, rows_moved bigint)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM neuralblitz.partition_maintenance(p_now, 1)
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.partition_maintenance_step(timestamptz) FROM PUBLIC;
