-- Creates run_partition_maintenance(): for each table in partition_policies it creates the
-- partitions from the current period through `premake` periods ahead, creates a partition for any
-- period whose rows landed in the DEFAULT partition and moves them there, and detaches (or drops)
-- partitions older than the retention. It does what pg_partman's run_maintenance() does for
-- native range partitioning, without the extension, so it runs unchanged wherever the schema does
-- (no superuser needed to install it). Idempotent; serialized by a transaction advisory lock.
-- Partition names: <table>_pYYYYMMDD (day), <table>_pIYYYwIW (ISO week), <table>_pYYYYMM (month);
-- bounds are in UTC.

CREATE OR REPLACE FUNCTION neuralblitz.partition_name(p_table text, p_period text, p_start timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
  SELECT p_table || '_p' || to_char(p_start, CASE p_period WHEN 'day' THEN 'YYYYMMDD' WHEN 'week' THEN 'IYYY"w"IW' ELSE 'YYYYMM' END)
$$;

-- Make a table append-only even for its owner: privileges first, then a trigger for TRUNCATE (the
-- row-level UPDATE/DELETE triggers of a partitioned table reach its partitions by themselves).
CREATE OR REPLACE FUNCTION neuralblitz.refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Partition maintenance may move strays out of a DEFAULT partition into their new partition.
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME LIKE '%\_default' AND pg_catalog.current_setting('nb.partition_maintenance', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege', HINT = 'Audit entries are never changed; partitions may be detached for archiving.';
END
$$;

-- p_stray_moves keeps DELETE on a DEFAULT partition for the owner, so maintenance can move strays.
CREATE OR REPLACE FUNCTION neuralblitz.seal_append_only(p_table regclass, p_stray_moves boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format('REVOKE UPDATE, TRUNCATE%s ON %s FROM nb_owner', CASE WHEN p_stray_moves THEN '' ELSE ', DELETE' END, p_table);
  EXECUTE format('CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.refuse_rewrite()', p_table);
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.seal_append_only(regclass, boolean) FROM PUBLIC;

-- A partition is read and written through its parent only: row-level security and grants are
-- checked on the parent, so whatever default privileges gave the new partition is taken back.
CREATE OR REPLACE FUNCTION neuralblitz.reach_only_through_parent(p_partition regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  g record;
BEGIN
  FOR g IN SELECT a.grantee, string_agg(a.privilege_type, ', ') AS privileges
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = p_partition AND a.grantee <> c.relowner
            GROUP BY a.grantee LOOP
    EXECUTE format('REVOKE %s ON %s FROM %s', g.privileges, p_partition,
                   CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.reach_only_through_parent(regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION neuralblitz.run_partition_maintenance(p_now timestamptz DEFAULT now())
RETURNS TABLE (table_name text, action text, partition_name text, rows_moved bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  pol       record;
  v_key     text;
  v_step    interval;
  v_start   timestamptz;
  v_starts  timestamptz[];
  v_name    text;
  v_moved   bigint;
  part      record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('neuralblitz.run_partition_maintenance'));
  -- The audit trail's immutability trigger lets rows leave its DEFAULT partition only for this move.
  PERFORM set_config('nb.partition_maintenance', 'on', true);

  FOR pol IN SELECT * FROM neuralblitz.partition_policies ORDER BY 1 LOOP
    SELECT a.attname INTO v_key
      FROM pg_partitioned_table pt
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
     WHERE pt.partrelid = format('neuralblitz.%I', pol.table_name)::regclass;
    v_step := ('1 ' || pol.period)::interval;

    -- Periods to hold: the current one, `premake` ahead, and any with rows in DEFAULT.
    EXECUTE format('SELECT array_agg(DISTINCT date_trunc(%L, %I)) FROM neuralblitz.%I', pol.period, v_key, pol.table_name || '_default')
       INTO v_starts;
    v_starts := coalesce(v_starts, '{}') || ARRAY(
      SELECT date_trunc(pol.period, p_now) + v_step * i FROM generate_series(0, pol.premake) AS i);

    FOR v_start IN SELECT DISTINCT s FROM unnest(v_starts) AS s ORDER BY 1 LOOP
      v_name := neuralblitz.partition_name(pol.table_name, pol.period, v_start);
      CONTINUE WHEN to_regclass(format('neuralblitz.%I', v_name)) IS NOT NULL;
      -- Rows of this period in DEFAULT block the new partition: set them aside, create, put back.
      EXECUTE format('CREATE TEMP TABLE nb_moving (LIKE neuralblitz.%I) ON COMMIT DROP', pol.table_name);
      EXECUTE format('WITH moved AS (DELETE FROM neuralblitz.%I WHERE %I >= %L AND %I < %L RETURNING *)
                      INSERT INTO nb_moving SELECT * FROM moved',
                     pol.table_name || '_default', v_key, v_start, v_key, v_start + v_step);
      GET DIAGNOSTICS v_moved = ROW_COUNT;
      EXECUTE format('CREATE TABLE neuralblitz.%I PARTITION OF neuralblitz.%I FOR VALUES FROM (%L) TO (%L)',
                     v_name, pol.table_name, v_start, v_start + v_step);
      IF v_moved > 0 THEN
        -- Into the partition itself: the rows are already vetted, the parent's row-level security
        -- would hide them from the owner.
        EXECUTE format('INSERT INTO neuralblitz.%I OVERRIDING SYSTEM VALUE SELECT * FROM nb_moving', v_name);
      END IF;
      DROP TABLE nb_moving;
      PERFORM neuralblitz.reach_only_through_parent(format('neuralblitz.%I', v_name)::regclass);
      IF pol.append_only THEN
        PERFORM neuralblitz.seal_append_only(format('neuralblitz.%I', v_name)::regclass);
      END IF;
      table_name := pol.table_name; action := 'created'; partition_name := v_name; rows_moved := v_moved;
      RETURN NEXT;
    END LOOP;

    CONTINUE WHEN pol.retention IS NULL;
    FOR part IN
      SELECT c.relname,
             substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = format('neuralblitz.%I', pol.table_name)::regclass
         AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
       ORDER BY 2
    LOOP
      EXIT WHEN part.upper_bound > p_now - pol.retention;
      EXECUTE format('ALTER TABLE neuralblitz.%I DETACH PARTITION neuralblitz.%I', pol.table_name, part.relname);
      IF pol.retention_action = 'drop' THEN
        EXECUTE format('DROP TABLE neuralblitz.%I', part.relname);
      END IF;
      table_name := pol.table_name;
      action := CASE pol.retention_action WHEN 'drop' THEN 'dropped' ELSE 'detached' END;
      partition_name := part.relname; rows_moved := NULL;
      RETURN NEXT;
    END LOOP;
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.run_partition_maintenance(timestamptz) FROM PUBLIC;
