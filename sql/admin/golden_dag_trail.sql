-- The GoldenDAG audit trail's trust boundary, applied by the platform's administrator (the superuser
-- locally and on Docker, the RDS master user, a member of rds_superuser, on AWS) after the bundles,
-- in one transaction: infra/topology/auditTrail.ts renders it for scripts/local (nbdb up) and
-- infra/database (an AdminSql resource) alike. Idempotent; safe on a stack built before it.
--
-- The trail (golden_dag_audit, its partitions and archived partitions), its chain (golden_dag_seals,
-- golden_dag_head) and its archive anchors (golden_dag_archives), and every function that writes
-- or checks them, belong to nb_audit: NOLOGIN, no member but the administrator, so nb_migrator
-- (nb_owner) cannot become it, and no bundle (which runs as nb_owner) can alter its objects.
-- Entries are appended only by golden_dag_append() (the audited tables' trigger) and the DDL
-- recorder below; seals and the head are written only by seal_golden_dag(); a guard trigger refuses
-- every other write, nb_audit's own privileges are cut to what those functions need, and no
-- function of nb_audit ever calls code another role owns.
-- Event triggers (superuser/rds_superuser only) record DDL on the audited tables and the trail, and
-- every GRANT/REVOKE, as trail entries (operation 'DDL'), and refuse to drop trail objects.

SET LOCAL search_path = pg_catalog, pg_temp;
SET LOCAL check_function_bodies = on;

-- On RDS the administrator is no superuser: as a member of nb_audit it may hand objects to it and
-- act as it. (nb_audit's USAGE and CREATE on the schema come from schema/privileges.ts, granted
-- before this step on every platform.)
GRANT nb_audit TO CURRENT_USER;

-- 1. Ownership: the trail's relations (every partition and archived partition too; ALTER TABLE
-- OWNER does not recurse) and the functions an earlier version of the bundles created as nb_owner.
DO $own$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT c.oid::regclass AS rel
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind IN ('r', 'p')
       AND (c.relname IN ('golden_dag_audit', 'golden_dag_seals', 'golden_dag_head', 'golden_dag_archives')
            OR c.relname ~ '^golden_dag_audit_(default|p[0-9]{6}(_archived)?)$')
       AND c.relowner <> 'nb_audit'::regrole
  LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO nb_audit', r.rel);
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure AS fn
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'neuralblitz'::regnamespace
       AND (p.proname ~ '^golden_dag_' OR p.proname IN ('seal_golden_dag', 'verify_golden_dag', 'verify_golden_dag_since', 'archive_golden_dag_partition'))
       AND p.proowner <> 'nb_audit'::regrole
  LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO nb_audit', r.fn);
  END LOOP;
END
$own$;

-- Operations of the trail: row changes of the audited tables, and DDL (recorded by the event trigger).
DO $check$
BEGIN
  IF (SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
       WHERE conrelid = 'neuralblitz.golden_dag_audit'::regclass AND conname = 'golden_dag_audit_operation')
     IS DISTINCT FROM 'CHECK ((operation = ANY (ARRAY[''INSERT''::text, ''UPDATE''::text, ''DELETE''::text, ''DDL''::text])))' THEN
    ALTER TABLE neuralblitz.golden_dag_audit DROP CONSTRAINT IF EXISTS golden_dag_audit_operation;
    ALTER TABLE neuralblitz.golden_dag_audit ADD CONSTRAINT golden_dag_audit_operation CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'DDL'));
  END IF;
END
$check$;

-- Everything below is created by nb_audit itself, so it owns it on every platform.
SET LOCAL ROLE nb_audit;

-- The canonical encoding: every field but the hashes, one per line. jsonb's text form is
-- deterministic (keys sorted, numbers normalised) and never holds a raw newline; free-text fields
-- are length-prefixed; NULL is '-', which no field's text can be; the time is exact microseconds
-- since the epoch. No SET clause (every name is qualified): it would keep the planner from inlining
-- it; its callers all pin search_path.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_canonical(
  p_id bigint, p_recorded_at timestamptz, p_table text, p_operation text, p_row_pk jsonb,
  p_db_role text, p_app_user_id uuid, p_old jsonb, p_new jsonb, p_prev_id bigint
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.convert_to(pg_catalog.concat_ws(E'\n',
           p_id,
           (EXTRACT(epoch FROM p_recorded_at) * 1000000)::bigint,
           pg_catalog.length(p_table) || ':' || p_table,
           p_operation,
           p_row_pk,
           pg_catalog.length(p_db_role) || ':' || p_db_role,
           coalesce(p_app_user_id::text, '-'),
           coalesce(p_old::text, '-'),
           coalesce(p_new::text, '-'),
           coalesce(p_prev_id::text, '-')), 'UTF8')
$$;

-- Secrets never reach the trail in any form: their columns are recorded as changed, not their value.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_redact(p_row jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_catalog.jsonb_object_agg(key, CASE WHEN key ~ '(_encrypted|_hmac|password_hash|key_hash)$' AND value <> 'null'::jsonb
                                               THEN '"[redacted]"'::jsonb ELSE value END)
    FROM pg_catalog.jsonb_each(p_row)
$$;

-- The audited tables: schema/tables.ts, audited: true (a test holds the two lists together).
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_audited_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ARRAY['users', 'api_keys', 'partner_configs', 'quantum_neurons', 'reality_networks',
               'reality_nodes', 'consciousness_records', 'monitoring_alerts']
$$;

-- The audited tables' trigger. It records only the tables it was made for, so a trigger the owner
-- attaches to a look-alike table elsewhere cannot add entries that pass for theirs.
-- The application user of this transaction, as the trail records it: nb.user_id only while it is
-- stamped for this transaction (set_user_context, R060), the same rule as current_user_id(), written
-- here again because the trail runs no function a lower role owns; a session-level SET left on a
-- pooled connection names no one. Never an error: an entry is recorded whatever the caller sent.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_context_user() RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v text := pg_catalog.current_setting('nb.user_id', true);
BEGIN
  IF v IS NULL OR v = '' OR pg_catalog.current_setting('nb.context_at', true) IS DISTINCT FROM EXTRACT(epoch FROM pg_catalog.now())::text
     OR v !~* '^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$' THEN
    RETURN NULL;
  END IF;
  RETURN v::uuid;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_context_user() FROM PUBLIC;

CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_append() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_old  jsonb := CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END;
  v_new  jsonb := CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END;
  v_pk   jsonb := pg_catalog.jsonb_build_object('id', coalesce(v_new, v_old) -> 'id');
  v_user uuid  := neuralblitz.golden_dag_context_user();
BEGIN
  IF TG_TABLE_SCHEMA <> 'neuralblitz' OR NOT TG_TABLE_NAME = ANY (neuralblitz.golden_dag_audited_tables())
     OR TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' THEN
    RAISE EXCEPTION 'golden_dag_append() records the audited tables of neuralblitz only, not %.%', TG_TABLE_SCHEMA, TG_TABLE_NAME
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_OP = 'UPDATE' THEN
    -- Only the columns that changed, before and after.
    SELECT pg_catalog.jsonb_object_agg(k, v_old -> k), pg_catalog.jsonb_object_agg(k, v_new -> k)
      INTO v_old, v_new
      FROM pg_catalog.jsonb_object_keys(v_new) AS k
     WHERE (v_new -> k) IS DISTINCT FROM (v_old -> k);
    IF v_new IS NULL THEN
      RETURN NULL;
    END IF;
  END IF;
  -- Redacted by assignments, not inside the INSERT: there each row would plan golden_dag_redact()
  -- again (a SQL function called from a new executor is planned per call), half the trigger's cost.
  v_old := neuralblitz.golden_dag_redact(v_old);
  v_new := neuralblitz.golden_dag_redact(v_new);
  INSERT INTO neuralblitz.golden_dag_audit (recorded_at, table_name, operation, row_pk, db_role, app_user_id, old_values, new_values)
  VALUES (pg_catalog.clock_timestamp(), TG_TABLE_NAME, TG_OP, v_pk, session_user, v_user, v_old, v_new);
  RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_append() FROM PUBLIC;

-- Refuses any rewrite of the trail, its chain and its anchors, for every role but a superuser
-- (who can skip triggers; verify_golden_dag() and --expect-head are what catch that).
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege', HINT = 'Audit entries are never changed; partitions may be archived with neuralblitz.archive_golden_dag_partition().';
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_refuse_rewrite() FROM PUBLIC;

-- Only the trail's own functions (running as nb_audit) write it: no direct INSERT for anyone,
-- whatever privileges someone grants, the owner included (nobody logs in as nb_audit).
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF current_user <> 'nb_audit' THEN
    RAISE EXCEPTION '%.% is written only by the audit trail''s own functions, not by % directly', TG_TABLE_SCHEMA, TG_TABLE_NAME, current_user
      USING ERRCODE = 'insufficient_privilege', HINT = 'Entries come from the audited tables'' trigger; seals from neuralblitz.seal_golden_dag().';
  END IF;
  IF TG_TABLE_NAME ~ '^golden_dag_audit' THEN
    IF NEW.db_role IS DISTINCT FROM session_user::text THEN
      RAISE EXCEPTION 'an audit entry names the login that made it (%), not %', session_user, NEW.db_role USING ERRCODE = 'insufficient_privilege';
    END IF;
  END IF;
  RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_guard() FROM PUBLIC;

-- The state of the audit triggers of an audited table, recorded with each DDL entry about it.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_trigger_state(p_table text, p_trigger text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce((SELECT CASE WHEN t.tgenabled IN ('O', 'A') THEN 'enabled' ELSE 'disabled' END
                     FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
                    WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relname = p_table AND t.tgname = p_trigger), 'missing')
$$;

-- Appends one DDL entry (operation 'DDL'): the command, the statement (its first 2,000
-- characters) and, for an audited table, whether its audit trigger and TRUNCATE guard are on.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_append_ddl(p_command text, p_object text, p_table text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_new jsonb := pg_catalog.jsonb_build_object('command', p_command, 'object', p_object,
                                               'statement', pg_catalog.left(pg_catalog.current_query(), 2000));
BEGIN
  IF p_table = ANY (neuralblitz.golden_dag_audited_tables()) THEN
    v_new := v_new || pg_catalog.jsonb_build_object(
      'audit_trigger', neuralblitz.golden_dag_trigger_state(p_table, 'golden_dag'),
      'truncate_guard', neuralblitz.golden_dag_trigger_state(p_table, 'golden_dag_refuse_truncate'));
  END IF;
  INSERT INTO neuralblitz.golden_dag_audit (recorded_at, table_name, operation, row_pk, db_role, app_user_id, old_values, new_values)
  VALUES (pg_catalog.clock_timestamp(), coalesce(p_table, '(ddl)'), 'DDL', pg_catalog.jsonb_build_object('object', p_object), session_user,
          neuralblitz.golden_dag_context_user(), NULL, v_new);
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_append_ddl(text, text, text) FROM PUBLIC;

-- Whether a relation (by name in neuralblitz) is part of the trail.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_is_trail(p_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT p_name IN ('golden_dag_audit', 'golden_dag_seals', 'golden_dag_head', 'golden_dag_archives')
      OR p_name ~ '^golden_dag_audit_(default|p[0-9]{6}(_archived)?)$'
$$;

-- ddl_command_end: record DDL on an audited table or the trail, and every GRANT/REVOKE; refuse
-- CREATE CAST to all but superusers (a cast to json on a type the owner made would run its code
-- inside to_jsonb() as nb_audit).
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_record_ddl() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c       record;
  v_table text;
  v_admin boolean := pg_catalog.pg_has_role(session_user, 'nb_audit', 'USAGE');
BEGIN
  FOR c IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
    IF c.command_tag = 'CREATE CAST' AND NOT v_admin THEN
      RAISE EXCEPTION 'CREATE CAST is reserved to the platform administrator in this database'
        USING ERRCODE = 'insufficient_privilege', HINT = 'A cast to json would run inside the audit trigger with the trail''s rights.';
    END IF;
    v_table := NULL;
    IF c.classid = 'pg_catalog.pg_class'::regclass THEN
      SELECT r.relname INTO v_table FROM pg_catalog.pg_class r WHERE r.oid = c.objid AND r.relnamespace = 'neuralblitz'::regnamespace;
    ELSIF c.classid = 'pg_catalog.pg_trigger'::regclass THEN
      SELECT r.relname INTO v_table FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class r ON r.oid = t.tgrelid
       WHERE t.oid = c.objid AND r.relnamespace = 'neuralblitz'::regnamespace;
    END IF;
    IF c.command_tag IN ('GRANT', 'REVOKE', 'ALTER DEFAULT PRIVILEGES')
       OR (c.command_tag <> 'CREATE TABLE' AND (v_table = ANY (neuralblitz.golden_dag_audited_tables()) OR neuralblitz.golden_dag_is_trail(v_table))) THEN
      PERFORM neuralblitz.golden_dag_append_ddl(c.command_tag, coalesce(c.object_identity, c.object_type), v_table);
    END IF;
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_record_ddl() FROM PUBLIC;

-- sql_drop: the trail's objects are never dropped (the schema's owner could otherwise drop them);
-- dropping an audited table or one of its triggers is recorded.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_record_drop() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  d       record;
  v_table text;
BEGIN
  FOR d IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
    CONTINUE WHEN d.schema_name IS DISTINCT FROM 'neuralblitz' AND d.object_type <> 'trigger';
    IF (d.object_type IN ('table', 'index', 'sequence', 'table constraint') AND d.object_identity ~ '^neuralblitz\.golden_dag_')
       OR (d.object_type = 'function' AND d.object_identity ~ '^neuralblitz\.(golden_dag_|seal_golden_dag|verify_golden_dag|archive_golden_dag_partition)')
       OR (d.object_type = 'trigger' AND d.object_identity ~ ' on neuralblitz\.golden_dag_') THEN
      -- The administrator (the only member of nb_audit) changes the trail in the admin step.
      CONTINUE WHEN pg_catalog.pg_has_role(session_user, 'nb_audit', 'USAGE');
      RAISE EXCEPTION '% % belongs to the GoldenDAG audit trail and is never dropped', d.object_type, d.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    v_table := substring(d.object_identity FROM '^(?:[a-z_]+ on )?neuralblitz\.([a-z_]+)$');
    IF v_table = ANY (neuralblitz.golden_dag_audited_tables()) AND d.object_type IN ('table', 'trigger') THEN
      PERFORM neuralblitz.golden_dag_append_ddl('DROP ' || upper(d.object_type), d.object_identity, v_table);
    END IF;
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_record_drop() FROM PUBLIC;

-- Chain the entries of committed transactions, in commit order (ties by transaction, then entry).
-- Only transactions committed at least p_settle ago: one committing right now might not be
-- visible yet while later ones are. Entries recorded more than p_window ago are not looked for
-- (verify_golden_dag() reports any left unsealed). One sealer at a time, serialized on the head's
-- row, which no role but nb_audit may lock (FOR UPDATE needs UPDATE on it); a sealer waits for
-- another at most p_wait, then fails naming it. Returns entries sealed.
DROP FUNCTION IF EXISTS neuralblitz.seal_golden_dag(interval, interval);
CREATE OR REPLACE FUNCTION neuralblitz.seal_golden_dag(p_settle interval DEFAULT '1 second', p_window interval DEFAULT '1 day', p_wait interval DEFAULT '60 seconds')
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_prev_id   bigint;
  v_prev_hash bytea;
  v_hash      bytea;
  v_sealed    integer := 0;
  v_deadline  timestamptz := pg_catalog.clock_timestamp() + p_wait;
  v_holders   text;
  e           record;
BEGIN
  LOOP
    BEGIN
      SELECT last_id, last_hash INTO v_prev_id, v_prev_hash FROM neuralblitz.golden_dag_head WHERE singleton FOR UPDATE NOWAIT;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      IF pg_catalog.clock_timestamp() >= v_deadline THEN
        SELECT pg_catalog.string_agg(pg_catalog.format('pid %s (user %s, application %L)', a.pid, a.usename, a.application_name), '; ')
          INTO v_holders
          FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'relation' AND l.relation = 'neuralblitz.golden_dag_head'::regclass AND l.mode = 'RowShareLock'
           AND l.granted AND l.pid <> pg_catalog.pg_backend_pid();
        RAISE EXCEPTION 'the audit sealer waited % for the chain head, held by %', p_wait, coalesce(v_holders, 'a session that has just ended')
          USING ERRCODE = 'lock_not_available',
                HINT = 'Another sealer (pg_cron, nbdb maintain, nbdb audit verify) is running; if it is stuck, end it with SELECT pg_terminate_backend(<pid>) and try again.';
      END IF;
      PERFORM pg_catalog.pg_sleep(0.05);
    END;
  END LOOP;
  FOR e IN
    SELECT a.*, pg_catalog.pg_xact_commit_timestamp(a.xmin) AS committed_at
      FROM neuralblitz.golden_dag_audit a
     WHERE a.recorded_at > pg_catalog.now() - p_window
       AND NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = a.id)
       -- An entry another seal names as its predecessor was sealed once: its seal was deleted, and
       -- chaining it again would paper over that; it stays out, and verification names it.
       AND NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals s WHERE s.prev_id = a.id)
       AND pg_catalog.pg_xact_commit_timestamp(a.xmin) < pg_catalog.clock_timestamp() - p_settle
     ORDER BY committed_at, a.xmin::text::bigint, a.id
  LOOP
    v_hash := pg_catalog.sha256(v_prev_hash || neuralblitz.golden_dag_canonical(
                e.id, e.recorded_at, e.table_name, e.operation, e.row_pk, e.db_role, e.app_user_id, e.old_values, e.new_values, v_prev_id));
    INSERT INTO neuralblitz.golden_dag_seals (entry_id, prev_id, prev_hash, entry_hash, committed_at)
    VALUES (e.id, v_prev_id, v_prev_hash, v_hash, e.committed_at);
    v_prev_id := e.id;
    v_prev_hash := v_hash;
    v_sealed := v_sealed + 1;
  END LOOP;
  IF v_sealed > 0 THEN
    UPDATE neuralblitz.golden_dag_head SET last_id = v_prev_id, last_hash = v_prev_hash WHERE singleton;
  END IF;
  RETURN v_sealed;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.seal_golden_dag(interval, interval, interval) FROM PUBLIC;

-- The checks both verifications make, as UNION ALL branches of query text over their CTEs a (the
-- entries) and head (the chain head): p_sealed the seals checked (all of them, or those walked),
-- each against its entry; p_unsealed the entries looked at for a missing seal; p_ddl the entries
-- whose DDL may have left an unaudited window. The one owner of these findings' texts.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_checks_sql(p_sealed text, p_unsealed text, p_ddl text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT pg_catalog.format($q$
    SELECT x.entry_id AS id, CASE WHEN a.id IS NULL THEN 'missing: sealed into the chain, but gone from the trail'
                                  ELSE 'content altered: the entry does not hash to its sealed entry_hash' END AS reason
      FROM %1$s x LEFT JOIN a ON a.id = x.entry_id
     WHERE a.id IS NULL OR x.entry_hash <> pg_catalog.sha256(x.prev_hash || neuralblitz.golden_dag_canonical(
             a.id, a.recorded_at, a.table_name, a.operation, a.row_pk, a.db_role, a.app_user_id,
             a.old_values, a.new_values, x.prev_id))
    UNION ALL
    SELECT e.id, 'not sealed: committed over a day ago, but not in the chain (run neuralblitz.seal_golden_dag(p_window => ''30 days''))'
      FROM %2$s e WHERE e.recorded_at < pg_catalog.now() - interval '1 day'
       AND NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals x WHERE x.entry_id = e.id)
    UNION ALL
    SELECT x.entry_id, 'head mismatch: the chain head holds another hash for this entry'
      FROM %1$s x JOIN head h ON h.last_id = x.entry_id WHERE x.entry_hash <> h.last_hash
    UNION ALL
    SELECT x.entry_id, 'beyond the head: sealed after the entry the head names'
      FROM neuralblitz.golden_dag_seals x JOIN head h ON x.prev_id = h.last_id
    UNION ALL
    SELECT e.id, pg_catalog.format('unaudited window: %%s by %%s at %%s left the audit trigger %%s and the TRUNCATE guard %%s on %%s: changes to it until they were on again are not in the trail',
                                   e.new_values ->> 'command', e.db_role, e.recorded_at, e.new_values ->> 'audit_trigger', e.new_values ->> 'truncate_guard', e.table_name)
      FROM %3$s e WHERE e.operation = 'DDL' AND (e.new_values ->> 'audit_trigger' <> 'enabled' OR e.new_values ->> 'truncate_guard' <> 'enabled')
  $q$, p_sealed, p_unsealed, p_ddl)
$fn$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_checks_sql(text, text, text) FROM PUBLIC;

-- The set-based pass over the chain that verify_golden_dag() runs, as query text over a source
-- of entries (the trail, and the archived partitions verify_golden_dag() adds). Its own function
-- so the audit benchmark runs exactly this query over a bench copy.
-- Each check is its own join, shaped so it can run in parallel and without a hash table (the
-- function's SET clauses, below): the seals in primary-key order merged with the entries in id
-- order (content and missing entries), the entries old enough against the seals' key (unsealed
-- entries), and the seals merged with themselves through the unique prev_id (links).
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_verify_sql(
  p_source text DEFAULT 'SELECT id, recorded_at, table_name, operation, row_pk, db_role, app_user_id, old_values, new_values FROM neuralblitz.golden_dag_audit'
) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT pg_catalog.format($q$
  WITH a AS NOT MATERIALIZED (%s),
  head AS (SELECT last_id, last_hash FROM neuralblitz.golden_dag_head),
  broken AS (
    -- Every seal with its entry (both read in id order), the entries old enough, the head, DDL.
    %s
    UNION ALL
    -- Every link, both ways it can break, in one join.
    SELECT CASE WHEN p.entry_id IS NULL THEN x.prev_id ELSE x.entry_id END,
           CASE WHEN p.entry_id IS NULL THEN pg_catalog.format('missing: entry %%s follows it, but its seal is not in the chain', x.entry_id)
                ELSE pg_catalog.format('link broken: prev_hash is not the hash of entry %%s', x.prev_id) END
      FROM neuralblitz.golden_dag_seals x LEFT JOIN neuralblitz.golden_dag_seals p ON p.entry_id = x.prev_id
     WHERE x.prev_id IS NOT NULL AND (p.entry_id IS NULL OR x.prev_hash <> p.entry_hash)
    UNION ALL
    SELECT x.entry_id, 'second beginning: no previous entry, but it is not the first'
      FROM neuralblitz.golden_dag_seals x WHERE x.prev_id IS NULL
       AND (x.prev_hash <> pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex')
            OR x.entry_id <> (SELECT min(y.entry_id) FROM neuralblitz.golden_dag_seals y WHERE y.prev_id IS NULL))
    UNION ALL
    SELECT h.last_id, 'missing: the chain head names it, but it is not in the chain'
      FROM head h WHERE h.last_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals x WHERE x.entry_id = h.last_id)
  )
  SELECT id, reason FROM broken ORDER BY id, reason
  $q$, p_source, neuralblitz.golden_dag_checks_sql('neuralblitz.golden_dag_seals', 'a', 'a'))
$fn$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_verify_sql(text) FROM PUBLIC;

-- One pass over the whole chain: every sealed entry's hash recomputed (entries of archived
-- partitions included), every link checked (not just the ends), second beginnings, the head,
-- entries gone from the trail, entries left unsealed, every archive anchor against its table, and
-- every DDL entry that left an audited table's audit trigger or TRUNCATE guard off (the changes
-- until it was on again are not in the trail). One row per finding, none when the chain is intact.
-- Runs with the caller's rights (nb_auditor reads the trail).
CREATE OR REPLACE FUNCTION neuralblitz.verify_golden_dag() RETURNS TABLE (id bigint, reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- Any sort or hash of the pass stays in memory instead of spilling at the default work_mem.
SET work_mem = '256MB'
-- Merge joins over the primary keys (read in id order, no sort) take about two thirds of the CPU
-- that hash tables of every seal take (a third for the links; measured on a 1M-entry copy), and
-- the seals-driven merge stays parallel over any number of partitions.
SET enable_hashjoin = off
-- The planner guesses that half the rows come out of each check (a handful do): at the default
-- cost per row passed through Gather it would never run the checks in parallel.
SET parallel_tuple_cost = 0.01
-- Compiling the pass's expressions costs more than it saves (about a CPU-second more per million entries).
SET jit = off
AS $$
DECLARE
  v_cols  text := 'id, recorded_at, table_name, operation, row_pk, db_role, app_user_id, old_values, new_values';
  v_src   text := 'SELECT ' || v_cols || ' FROM neuralblitz.golden_dag_audit';
  r       record;
  v_n     bigint;
  v_min   bigint;
  v_max   bigint;
BEGIN
  FOR r IN
    SELECT x.partition_name, x.first_id, x.last_id, x.last_hash, x.entries, c.oid AS rel, pg_catalog.pg_get_userbyid(c.relowner) AS owner
      FROM neuralblitz.golden_dag_archives x
      LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = 'neuralblitz'::regnamespace AND c.relname = x.partition_name || '_archived'
                                      AND c.relkind = 'r' AND NOT c.relispartition
     ORDER BY x.first_id
  LOOP
    IF r.rel IS NULL THEN
      id := r.last_id;
      reason := pg_catalog.format('archive %s: its table neuralblitz.%I is gone, or the archive row is forged', r.partition_name, r.partition_name || '_archived');
      RETURN NEXT;
      CONTINUE;
    END IF;
    IF r.owner <> 'nb_audit' THEN
      id := r.last_id;
      reason := pg_catalog.format('archive %s: its table is owned by %s, not nb_audit', r.partition_name, r.owner);
      RETURN NEXT;
    END IF;
    v_src := v_src || pg_catalog.format(' UNION ALL SELECT %s FROM %s', v_cols, r.rel::regclass);
    EXECUTE pg_catalog.format('SELECT count(*), min(id), max(id) FROM %s', r.rel::regclass) INTO v_n, v_min, v_max;
    IF (v_n, v_min, v_max) IS DISTINCT FROM (r.entries, r.first_id, r.last_id) THEN
      id := r.last_id;
      reason := pg_catalog.format('archive %s: its table holds %s entries (%s..%s), its archive row says %s (%s..%s)',
                                  r.partition_name, v_n, v_min, v_max, r.entries, r.first_id, r.last_id);
      RETURN NEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = r.last_id AND s.entry_hash = r.last_hash) THEN
      id := r.last_id;
      reason := pg_catalog.format('archive %s: its last hash is not the sealed hash of entry %s', r.partition_name, r.last_id);
      RETURN NEXT;
    END IF;
  END LOOP;

  RETURN QUERY EXECUTE neuralblitz.golden_dag_verify_sql(v_src);
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.verify_golden_dag() FROM PUBLIC;

-- Incremental verification since a head recorded by an earlier verification (`nbdb audit verify
-- --since-head`): the recorded entry must still be sealed with the recorded hash and hash to it,
-- and every entry chained after it, up to the head, is checked as verify_golden_dag() checks the
-- whole chain: its content against its sealed hash, its link to the entry before it, the head at
-- the end of the walk (and nothing sealed beyond it), and any unaudited window among them; entries
-- with a later id left unsealed for over a day too. The walk follows each seal's successor (prev_id
-- is unique, so the chain cannot fork), so the work grows with the entries since the recorded head,
-- not with the chain. Entries up to the recorded head are not re-checked: that is what the recorded
-- head stands for (the verification that printed it). As query text ($1 the recorded entry) over a
-- source of entries, so the audit benchmark runs exactly this query over a bench copy.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_verify_since_sql(p_source text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT pg_catalog.format($q$
  -- Each step of the walk carries the hash of the entry it came from, so the links are checked as
  -- it goes (no second join). The recorded entry again would mean a cycle (a forged seal): the walk
  -- stops there. Chain order is commit order, not id order (a transaction that began first may
  -- commit last), so no id range could stand for the walk.
  WITH RECURSIVE walked AS (
    SELECT x.entry_id, x.prev_id, x.prev_hash, x.entry_hash, NULL::bytea AS pred_hash FROM neuralblitz.golden_dag_seals x WHERE x.entry_id = $1
    UNION ALL
    SELECT x.entry_id, x.prev_id, x.prev_hash, x.entry_hash, w.entry_hash
      FROM walked w JOIN neuralblitz.golden_dag_seals x ON x.prev_id = w.entry_id
     WHERE x.entry_id <> $1
  ),
  a AS MATERIALIZED (SELECT e.* FROM (%s) e WHERE e.id BETWEEN (SELECT min(entry_id) FROM walked) AND (SELECT max(entry_id) FROM walked)),
  head AS (SELECT last_id, last_hash FROM neuralblitz.golden_dag_head),
  broken AS (
    -- The walked seals with their entries, the entries after the recorded one, the head, DDL walked.
    %s
    UNION ALL
    SELECT w.entry_id, pg_catalog.format('link broken: prev_hash is not the hash of entry %%s', w.prev_id)
      FROM walked w WHERE w.entry_id <> $1 AND w.prev_hash <> w.pred_hash
    UNION ALL
    SELECT h.last_id, pg_catalog.format('head not reached: the chain from the recorded entry %%s does not lead to the head', $1)
      FROM head h WHERE NOT EXISTS (SELECT 1 FROM walked w WHERE w.entry_id = h.last_id)
  )
  SELECT id, reason FROM broken ORDER BY id, reason
  $q$, p_source, neuralblitz.golden_dag_checks_sql('walked', '(SELECT id, recorded_at FROM neuralblitz.golden_dag_audit WHERE id > $1)',
                                                   '(SELECT a.* FROM walked w JOIN a ON a.id = w.entry_id WHERE w.entry_id <> $1)'))
$fn$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_verify_since_sql(text) FROM PUBLIC;

-- The trail's entries with those of every archived partition whose table exists, as query text
-- (the source verify_golden_dag() and verify_golden_dag_since() check).
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_entries_sql() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT 'SELECT id, recorded_at, table_name, operation, row_pk, db_role, app_user_id, old_values, new_values FROM neuralblitz.golden_dag_audit'
         || coalesce(pg_catalog.string_agg(pg_catalog.format(' UNION ALL SELECT id, recorded_at, table_name, operation, row_pk, db_role, app_user_id, old_values, new_values FROM %s', c.oid::regclass), '' ORDER BY x.first_id), '')
    FROM neuralblitz.golden_dag_archives x
    JOIN pg_catalog.pg_class c ON c.relnamespace = 'neuralblitz'::regnamespace AND c.relname = x.partition_name || '_archived'
                              AND c.relkind = 'r' AND NOT c.relispartition
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_entries_sql() FROM PUBLIC;

-- `nbdb audit verify --since-head <id>:<hash>`: one row per finding since that recorded head, none
-- when the recorded entry still holds its hash and everything chained after it is intact.
-- Runs with the caller's rights (nb_auditor reads the trail).
CREATE OR REPLACE FUNCTION neuralblitz.verify_golden_dag_since(p_id bigint, p_hash bytea) RETURNS TABLE (id bigint, reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET work_mem = '256MB'
AS $$
DECLARE
  v_hash bytea;
BEGIN
  SELECT s.entry_hash INTO v_hash FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = p_id;
  IF NOT FOUND THEN
    id := p_id;
    reason := 'recorded head: the entry is no longer in the chain';
    RETURN NEXT;
    RETURN;
  END IF;
  IF v_hash <> p_hash THEN
    id := p_id;
    reason := pg_catalog.format('recorded head: the entry''s hash is now %s, not %s: the chain was rewritten',
                                pg_catalog.encode(v_hash, 'hex'), pg_catalog.encode(p_hash, 'hex'));
    RETURN NEXT;
    RETURN;
  END IF;
  RETURN QUERY EXECUTE neuralblitz.golden_dag_verify_since_sql(neuralblitz.golden_dag_entries_sql()) USING p_id;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.verify_golden_dag_since(bigint, bytea) FROM PUBLIC;

-- The trail's month partitions, for run_partition_maintenance() (nb_owner cannot create partitions
-- of a table it does not own): the current month and p_premake ahead. A month with strays in
-- DEFAULT keeps them there (the trail is never rewritten) and gets no partition.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_premake(p_now timestamptz, p_premake integer)
RETURNS TABLE (action text, partition_name text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  v_start  timestamptz;
  v_strays timestamptz[];
  v_name   text;
BEGIN
  IF p_premake NOT BETWEEN 0 AND 120 THEN
    RAISE EXCEPTION 'premake must be 0 to 120 months, got %', p_premake;
  END IF;
  SELECT coalesce(array_agg(DISTINCT date_trunc('month', recorded_at)), '{}') INTO v_strays FROM neuralblitz.golden_dag_audit_default;
  FOR v_start IN SELECT DISTINCT s FROM unnest(v_strays || ARRAY(SELECT date_trunc('month', p_now) + interval '1 month' * i FROM generate_series(0, p_premake) AS i)) AS s ORDER BY 1 LOOP
    v_name := 'golden_dag_audit_p' || to_char(v_start, 'YYYYMM');
    CONTINUE WHEN EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                           WHERE i.inhparent = 'neuralblitz.golden_dag_audit'::regclass AND c.relname = v_name);
    IF v_start = ANY (v_strays) THEN
      action := 'kept in default'; partition_name := v_name;
      RETURN NEXT;
      CONTINUE;
    END IF;
    EXECUTE format('CREATE TABLE neuralblitz.%I PARTITION OF neuralblitz.golden_dag_audit FOR VALUES FROM (%L) TO (%L)', v_name, v_start, v_start + interval '1 month');
    EXECUTE format('CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON neuralblitz.%I FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite()', v_name);
    action := 'created'; partition_name := v_name;
    RETURN NEXT;
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_premake(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION neuralblitz.golden_dag_premake(timestamptz, integer) TO nb_owner;

-- Archive (detach) one partition of the trail: its last entry's id and hash are recorded first, so
-- verification goes on checking the entries that remain against it, and goes on checking the
-- archived entries themselves (they stay nb_audit's, append-only, readable by nb_auditor).
CREATE OR REPLACE FUNCTION neuralblitz.archive_golden_dag_partition(p_partition text)
RETURNS neuralblitz.golden_dag_archives
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_rel      regclass;
  v_archive  neuralblitz.golden_dag_archives;
BEGIN
  SELECT i.inhrelid::regclass INTO v_rel
    FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'neuralblitz.golden_dag_audit'::regclass AND c.relname = p_partition
     AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT';
  IF v_rel IS NULL THEN
    RAISE EXCEPTION '% is not a dated partition of neuralblitz.golden_dag_audit', p_partition
      USING HINT = 'Name one of the partitions listed by: SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = ''neuralblitz.golden_dag_audit''::regclass';
  END IF;
  EXECUTE pg_catalog.format('SELECT %L, min(id), max(id), count(*) FROM %s', p_partition, v_rel)
    INTO v_archive.partition_name, v_archive.first_id, v_archive.last_id, v_archive.entries;
  IF v_archive.entries = 0 THEN
    RAISE EXCEPTION '% holds no entries: nothing to archive', p_partition;
  END IF;
  -- Archive sealed entries only: the seals stay behind and keep the chain checkable.
  PERFORM neuralblitz.seal_golden_dag(p_settle => interval '0', p_window => interval '100 years');
  IF EXISTS (SELECT 1 FROM neuralblitz.golden_dag_audit a WHERE a.tableoid = v_rel
              AND NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = a.id)) THEN
    RAISE EXCEPTION '% holds entries not sealed yet (a transaction still open?): try again later', p_partition;
  END IF;
  SELECT s.entry_hash INTO v_archive.last_hash FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = v_archive.last_id;
  INSERT INTO neuralblitz.golden_dag_archives (partition_name, first_id, last_id, last_hash, entries)
  VALUES (v_archive.partition_name, v_archive.first_id, v_archive.last_id, v_archive.last_hash, v_archive.entries)
  RETURNING * INTO v_archive;
  EXECUTE pg_catalog.format('ALTER TABLE neuralblitz.golden_dag_audit DETACH PARTITION %s', v_rel);
  EXECUTE pg_catalog.format('ALTER TABLE %s RENAME TO %I', v_rel, p_partition || '_archived');
  PERFORM neuralblitz.golden_dag_seal_archived(pg_catalog.format('neuralblitz.%I', p_partition || '_archived')::regclass);
  RETURN v_archive;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.archive_golden_dag_partition(text) FROM PUBLIC;

-- A detached partition loses the triggers it had from its parent: it gets its own, refusing every
-- write, and stays readable by the auditor.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_seal_archived(p_table regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', p_table);
  EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES ON %s FROM nb_audit', p_table);
  EXECUTE pg_catalog.format('GRANT SELECT ON %s TO nb_auditor', p_table);
  EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER refuse_rewrite BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite()', p_table);
  EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite()', p_table);
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_seal_archived(regclass) FROM PUBLIC;

-- Privileges and triggers of the trail: nb_audit keeps only what its functions need, the guard
-- refuses writes from anything else, and nothing is ever rewritten or truncated.
DO $seal$
DECLARE
  part regclass;
BEGIN
  REVOKE ALL ON neuralblitz.golden_dag_audit, neuralblitz.golden_dag_seals, neuralblitz.golden_dag_head, neuralblitz.golden_dag_archives FROM PUBLIC, nb_owner;
  REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES ON neuralblitz.golden_dag_audit, neuralblitz.golden_dag_seals, neuralblitz.golden_dag_archives FROM nb_audit;
  REVOKE INSERT, DELETE, TRUNCATE, REFERENCES ON neuralblitz.golden_dag_head FROM nb_audit;
  CREATE OR REPLACE TRIGGER golden_dag_guard BEFORE INSERT ON neuralblitz.golden_dag_audit
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_guard();
  CREATE OR REPLACE TRIGGER refuse_rewrite BEFORE UPDATE OR DELETE ON neuralblitz.golden_dag_audit
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
  CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON neuralblitz.golden_dag_audit
    FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
  FOR part IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'neuralblitz.golden_dag_audit'::regclass LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC, nb_owner', part);
    EXECUTE pg_catalog.format('REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES ON %s FROM nb_audit', part);
    EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite()', part);
  END LOOP;
  FOR part IN SELECT c.oid::regclass FROM pg_catalog.pg_class c
               WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
                 AND c.relname ~ '^golden_dag_audit_p[0-9]{6}_archived$' LOOP
    PERFORM neuralblitz.golden_dag_seal_archived(part);
  END LOOP;
  CREATE OR REPLACE TRIGGER golden_dag_guard BEFORE INSERT ON neuralblitz.golden_dag_seals
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_guard();
  CREATE OR REPLACE TRIGGER refuse_rewrite BEFORE UPDATE OR DELETE ON neuralblitz.golden_dag_seals
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
  CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON neuralblitz.golden_dag_seals
    FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
  CREATE OR REPLACE TRIGGER golden_dag_guard BEFORE INSERT OR UPDATE ON neuralblitz.golden_dag_head
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_guard();
  CREATE OR REPLACE TRIGGER refuse_rewrite BEFORE DELETE ON neuralblitz.golden_dag_head
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
  CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON neuralblitz.golden_dag_head
    FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
  CREATE OR REPLACE TRIGGER golden_dag_guard BEFORE INSERT ON neuralblitz.golden_dag_archives
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_guard();
  CREATE OR REPLACE TRIGGER refuse_rewrite BEFORE UPDATE OR DELETE ON neuralblitz.golden_dag_archives
    FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
  CREATE OR REPLACE TRIGGER refuse_truncate BEFORE TRUNCATE ON neuralblitz.golden_dag_archives
    FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite();
END
$seal$;

-- The sealer's lag, for the metrics exporter (nb_monitor, schema/privileges.ts): entries committed
-- but not yet chained, and the age of the oldest. Counts only: the caller reads no entry.
CREATE OR REPLACE FUNCTION neuralblitz.golden_dag_seal_lag(OUT unsealed bigint, OUT oldest_unsealed_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $lag$
  SELECT count(*), coalesce(EXTRACT(epoch FROM pg_catalog.now() - min(a.recorded_at)), 0)::double precision
    FROM neuralblitz.golden_dag_audit AS a
   WHERE NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = a.id)
     AND NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals s WHERE s.prev_id = a.id)
$lag$;
REVOKE EXECUTE ON FUNCTION neuralblitz.golden_dag_seal_lag() FROM PUBLIC;

-- The functions nb_owner's code calls: the sealer (maintenance) and the partition maker (above).
-- Everyone else's grants on the trail are schema/privileges.ts's.
GRANT EXECUTE ON FUNCTION neuralblitz.seal_golden_dag(interval, interval, interval) TO nb_owner;

-- This month's and next month's partitions, so that the entries recorded from now on (DDL among
-- them) land in a partition, not in DEFAULT (maintenance makes the rest ahead).
SELECT count(*) FROM neuralblitz.golden_dag_premake(pg_catalog.now(), 1);

-- 2. As the administrator again: the audited tables' triggers (on nb_owner's tables, which a bundle
-- cannot recreate since only nb_audit's members may use the function), and the event triggers.
RESET ROLE;
SET LOCAL search_path = pg_catalog, pg_temp;
DO $triggers$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY neuralblitz.golden_dag_audited_tables() LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_proc p ON p.oid = g.tgfoid
                    WHERE g.tgrelid = pg_catalog.format('neuralblitz.%I', t)::regclass AND g.tgname = 'golden_dag'
                      AND p.oid = 'neuralblitz.golden_dag_append()'::regprocedure AND g.tgenabled = 'O' AND g.tgtype = 29) THEN
      EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER golden_dag AFTER INSERT OR UPDATE OR DELETE ON neuralblitz.%I
                                   FOR EACH ROW EXECUTE FUNCTION neuralblitz.golden_dag_append()', t);
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'golden_dag_ddl') THEN
    CREATE EVENT TRIGGER golden_dag_ddl ON ddl_command_end EXECUTE FUNCTION neuralblitz.golden_dag_record_ddl();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'golden_dag_drop') THEN
    CREATE EVENT TRIGGER golden_dag_drop ON sql_drop EXECUTE FUNCTION neuralblitz.golden_dag_record_drop();
  END IF;
  ALTER EVENT TRIGGER golden_dag_ddl ENABLE;
  ALTER EVENT TRIGGER golden_dag_drop ENABLE;
END
$triggers$;
