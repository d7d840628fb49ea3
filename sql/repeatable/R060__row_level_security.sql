-- Creates current_user_id() and the row-level security of every user-data table: each table of
-- the schema with a user_id column gets RLS enabled and FORCEd (the owner too), and one policy
-- per command keyed on user_id = (select current_user_id()), WITH CHECK on writes. The caller
-- names the user per transaction: SELECT neuralblitz.set_user_context('<uuid>', <data key>).
-- Policies apply to every role (grants decide who may run which command; policies which rows).
-- Re-runnable: existing policies of these tables are dropped and created again.

-- The user context is bound to the transaction that set it: set_user_context() stamps it with the
-- transaction's start time (now()), and current_user_id() and data_key() accept nb.user_id and
-- nb.data_key only while that stamp is this transaction's. So a session-level SET or
-- set_config(..., false) by any client, left on a pooled server connection, gives no later
-- transaction a user or a key: not another client's, not the same session's.
-- Names the user (and, for the encrypted columns, the data key) for this transaction only.
-- p_user_id NULL names no user (e.g. a job that needs only the key).
CREATE OR REPLACE FUNCTION neuralblitz.set_user_context(p_user_id uuid, p_data_key text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  -- plpgsql: its plan is cached per session (the pooler's reset keeps cached plans); a SQL function's
  -- body would be planned again at every call.
  PERFORM pg_catalog.set_config('nb.user_id', COALESCE(p_user_id::text, ''), true),
          pg_catalog.set_config('nb.data_key', COALESCE(p_data_key, ''), true),
          pg_catalog.set_config('nb.context_at', EXTRACT(epoch FROM pg_catalog.now())::text, true);
END
$$;

-- Missing, empty or not stamped for this transaction → NULL, so `user_id = NULL` matches no row;
-- malformed → an error, never all rows.
-- Called once per query (policies wrap it in a sub-select) and kept cheap to plan and run: plpgsql,
-- whose compiled body is cached per session (an inlinable SQL version was measured slower: its body
-- is parsed again at every planning, 40-50 µs, and through PgBouncer every query is planned), no
-- exception block (a subtransaction per call), no SET clause (not SECURITY DEFINER; names qualified).
CREATE OR REPLACE FUNCTION neuralblitz.current_user_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  v text := pg_catalog.current_setting('nb.user_id', true);
BEGIN
  IF v IS NULL OR v = '' THEN
    RETURN NULL;
  END IF;
  IF pg_catalog.current_setting('nb.context_at', true) IS DISTINCT FROM EXTRACT(epoch FROM pg_catalog.now())::text THEN
    RETURN NULL;
  END IF;
  IF v !~* '^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$' THEN
    RAISE EXCEPTION 'nb.user_id is not a uuid: "%"', v
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Name the user per transaction: SELECT neuralblitz.set_user_context(''<uuid>'', <data key>)';
  END IF;
  RETURN v::uuid;
END
$$;

REVOKE EXECUTE ON FUNCTION neuralblitz.set_user_context(uuid, text) FROM PUBLIC;

DO $$
DECLARE
  t text;
  p text;
  own_rows constant text := 'user_id = (SELECT neuralblitz.current_user_id())';
BEGIN
  FOR t IN SELECT c.relname
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
            WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  LOOP
    EXECUTE format('ALTER TABLE neuralblitz.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
    FOR p IN SELECT polname FROM pg_catalog.pg_policy WHERE polrelid = format('neuralblitz.%I', t)::regclass LOOP
      EXECUTE format('DROP POLICY %I ON neuralblitz.%I', p, t);
    END LOOP;
    EXECUTE format('CREATE POLICY %I ON neuralblitz.%I FOR SELECT USING (%s)', t || '_select_own', t, own_rows);
    EXECUTE format('CREATE POLICY %I ON neuralblitz.%I FOR INSERT WITH CHECK (%s)', t || '_insert_own', t, own_rows);
    EXECUTE format('CREATE POLICY %I ON neuralblitz.%I FOR UPDATE USING (%s) WITH CHECK (%s)', t || '_update_own', t, own_rows, own_rows);
    EXECUTE format('CREATE POLICY %I ON neuralblitz.%I FOR DELETE USING (%s)', t || '_delete_own', t, own_rows);
  END LOOP;
END
$$;
