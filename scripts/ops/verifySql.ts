// sql/verify_schema.sql, the schema verdict for `psql -f` and `nbdb verify` alike: the catalog of a
// database freshly built from sql/ (plus the privilege model's grants) is embedded as the expected
// state, the same catalog query runs on the live database, and every difference is a drift with
// what to do about it. Partitions (dated, made by maintenance) are checked by rule instead: the
// ones ahead must exist and DEFAULT partitions must be empty. The file is generated
// (`nbdb verify --regenerate`); a test fails when it no longer matches sql/.
import * as path from "path";
import { Bundle } from "../../infra/bundles/catalog";
import { MANAGED_GRANTEES, TRAIL_TABLES } from "../../schema/privileges";
import { ROLES } from "../../schema/roles";
import { LIVE_GRANTS_SQL } from "../local/grants";

export const VERIFY_SQL_FILE = path.resolve(__dirname, "..", "..", "sql", "verify_schema.sql");
export const CHECK_BEGIN = "-- nbdb:check-begin";
export const CHECK_END = "-- nbdb:check-end";

export interface CatalogRow {
  readonly kind: string;
  readonly name: string;
  readonly detail: string;
}

export interface ExpectedRow extends CatalogRow {
  /** Where the object is defined, for the advice in a drift. */
  readonly source: string;
}

// nb_owner too: it owns no object of the trail, so what it holds there (EXECUTE on the sealer and
// the partition maker) is all it may hold.
const MANAGED = [...MANAGED_GRANTEES, "nb_owner", "PUBLIC"].map((r) => `'${r}'`).join(", ");
/** The stack's roles (schema/roles.ts), as an SQL array. */
const PROJECT_ROLES = `ARRAY[${ROLES.map((r) => `'${r.name}'`).join(", ")}]::text[]`;
const TRAIL = `ARRAY[${TRAIL_TABLES.map((t) => `'${t}'`).join(", ")}]::text[]`;
// A role that is not the stack's but may administer it (the superuser; the RDS master, which has
// CREATEROLE) prints as one name, so the same expected state holds on every platform.
const WHO = (oid: string) =>
  `(SELECT CASE WHEN r.rolname = ANY (${PROJECT_ROLES}) THEN r.rolname::text WHEN r.rolsuper OR r.rolcreaterole THEN '(administrator)' ELSE r.rolname::text END FROM pg_catalog.pg_roles r WHERE r.oid = ${oid})`;
// Values of settings that may hold secrets print as set, never in clear.
const SETTING_VALUE = (kv: string) => `CASE WHEN split_part(${kv}, '=', 1) ~* '(key|secret|password)' THEN '[set]' ELSE substr(${kv}, strpos(${kv}, '=') + 1) END`;

/** Whether pg_cron is there and its jobs readable (the jobs of the stack run as nb_migrator, who may read its own). */
const CRON_READABLE = `((SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE') FROM pg_catalog.pg_namespace n WHERE n.nspname = 'cron') IS TRUE AND pg_catalog.to_regclass('cron.job') IS NOT NULL)`;

/** Privileges and roles: the attributes, memberships, settings and grants the issue of a stack hinges on. */
const PRIVILEGE_CATALOG_SQL = `
  UNION ALL
  -- Each role of the stack, as ALTER ROLE would set it.
  SELECT 'role', r.rolname::text,
         CASE WHEN r.rolcanlogin THEN 'LOGIN' ELSE 'NOLOGIN' END || CASE WHEN r.rolsuper THEN ' SUPERUSER' ELSE ' NOSUPERUSER' END
         || CASE WHEN r.rolinherit THEN ' INHERIT' ELSE ' NOINHERIT' END || CASE WHEN r.rolcreaterole THEN ' CREATEROLE' ELSE ' NOCREATEROLE' END
         || CASE WHEN r.rolcreatedb THEN ' CREATEDB' ELSE ' NOCREATEDB' END || CASE WHEN r.rolreplication THEN ' REPLICATION' ELSE ' NOREPLICATION' END
         || CASE WHEN r.rolbypassrls THEN ' BYPASSRLS' ELSE ' NOBYPASSRLS' END || ' CONNECTION LIMIT ' || r.rolconnlimit
         || ' VALID UNTIL ' || pg_catalog.quote_literal(coalesce(pg_catalog.to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS+00'), 'infinity'))
    FROM pg_catalog.pg_roles r WHERE r.rolname = ANY (${PROJECT_ROLES})
  UNION ALL
  -- Every membership a role of the stack has or gives (predefined roles such as pg_read_server_files included).
  SELECT 'membership', ${WHO("m.member")} || ' member of ' || ${WHO("m.roleid")},
         CASE WHEN m.admin_option THEN 'WITH ADMIN OPTION' ELSE 'member' END
    FROM pg_catalog.pg_auth_members m
   WHERE (m.member IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY (${PROJECT_ROLES}))
          OR m.roleid IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY (${PROJECT_ROLES})))
     -- The administrator's own memberships (of nb_owner, nb_audit) are the platform's business.
     AND ${WHO("m.member")} <> '(administrator)'
  UNION ALL
  -- Settings of the stack's roles (in any database) and of this database.
  SELECT 'setting', CASE WHEN s.setrole = 0 THEN 'database ' || current_database() ELSE 'role ' || pg_catalog.pg_get_userbyid(s.setrole) END
         || CASE WHEN s.setdatabase = 0 THEN '' WHEN s.setrole = 0 THEN '' ELSE ' in database ' || (SELECT datname FROM pg_catalog.pg_database WHERE oid = s.setdatabase) END
         || ' ' || split_part(kv, '=', 1),
         ${SETTING_VALUE("kv")}
    FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS kv
   WHERE (s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
      OR s.setrole IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY (${PROJECT_ROLES}))
  UNION ALL
  -- Column privileges on the project's relations (the model grants none).
  SELECT 'column grant', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END || ' ' || a.privilege_type || ' on ' || c.relname || '.' || att.attname,
         'GRANT ' || a.privilege_type || ' (' || pg_catalog.quote_ident(att.attname) || ') ON TABLE neuralblitz.' || pg_catalog.quote_ident(c.relname)
         || ' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute att ON att.attrelid = c.oid AND att.attacl IS NOT NULL, pg_catalog.aclexplode(att.attacl) a
   WHERE c.relnamespace = 'neuralblitz'::regnamespace
  UNION ALL
  -- Extensions, in whichever schema (pg_cron exists only where the server preloads it).
  SELECT 'extension', e.extname::text, 'in schema ' || e.extnamespace::regnamespace::text || ', owned by ' || ${WHO("e.extowner")}
    FROM pg_catalog.pg_extension e WHERE e.extname NOT IN ('plpgsql', 'pg_cron')
  UNION ALL
  -- Every schema, its owner and its privileges.
  SELECT 'schema', n.nspname::text,
         'owned by ' || ${WHO("n.nspowner")} || ', privileges: ' || coalesce((
           SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE ${WHO("a.grantee")} END || ' ' || a.privilege_type, ', ' ORDER BY 1)
             FROM pg_catalog.aclexplode(coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a WHERE a.grantee <> n.nspowner), 'none')
    FROM pg_catalog.pg_namespace n
   WHERE n.nspname !~ '^pg_(toast|temp_|toast_temp_)' AND n.nspname NOT IN ('information_schema', 'cron')
  UNION ALL
  -- Privileges of the stack's roles on anything outside the project schema: relations and
  -- functions of every other schema (pg_catalog included), and other databases.
  SELECT 'grant elsewhere', pg_catalog.pg_get_userbyid(a.grantee) || ' ' || a.privilege_type || ' on ' || o.what,
         'GRANT ' || a.privilege_type || ' ON ' || o.what || ' TO ' || pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee))
    FROM (SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::regclass::text AS what, c.relowner AS owner, c.relacl AS acl
            FROM pg_catalog.pg_class c WHERE c.relnamespace <> 'neuralblitz'::regnamespace AND c.relacl IS NOT NULL
          UNION ALL
          SELECT 'FUNCTION ' || p.oid::regprocedure::text, p.proowner, p.proacl
            FROM pg_catalog.pg_proc p WHERE p.pronamespace <> 'neuralblitz'::regnamespace AND p.proacl IS NOT NULL
          UNION ALL
          SELECT 'DATABASE ' || pg_catalog.quote_ident(d.datname), d.datdba, d.datacl
            FROM pg_catalog.pg_database d WHERE d.datname <> current_database() AND d.datacl IS NOT NULL) AS o,
         pg_catalog.aclexplode(o.acl) a
   WHERE a.grantee <> o.owner AND pg_catalog.pg_get_userbyid(a.grantee) = ANY (${PROJECT_ROLES})
  UNION ALL
  -- The audit trail's owner keeps only what its own functions need (privileges can be revoked from an owner).
  SELECT 'owner privilege', c.relname::text,
         pg_catalog.pg_get_userbyid(c.relowner) || ': ' || coalesce((
           SELECT pg_catalog.string_agg(a.privilege_type, ', ' ORDER BY 1) FROM pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a
            WHERE a.grantee = c.relowner), 'none')
    FROM pg_catalog.pg_class c WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relname = ANY (${TRAIL})
  UNION ALL
  -- The event triggers that record DDL in the audit trail and guard its objects.
  SELECT 'event trigger', e.evtname::text,
         'ON ' || e.evtevent || ' EXECUTE FUNCTION ' || e.evtfoid::regprocedure::text || ', owned by ' || ${WHO("e.evtowner")}
         || CASE e.evtenabled WHEN 'O' THEN '' WHEN 'D' THEN ' [DISABLED]' WHEN 'R' THEN ' [REPLICA ONLY]' ELSE ' [ALWAYS]' END
    FROM pg_catalog.pg_event_trigger e
  UNION ALL
  -- pg_cron's jobs, where the server has it (a role sees its own jobs: the stack's run as nb_migrator).
  SELECT 'scheduled job', j.jobname, j.schedule || ' | ' || j.command || ' | database ' || j.database || ' as ' || j.username || CASE WHEN j.active THEN '' ELSE ' [INACTIVE]' END
    FROM XMLTABLE('/table/row' PASSING
           CASE WHEN ${CRON_READABLE}
                THEN pg_catalog.query_to_xml('SELECT jobname, schedule, command, database, username, active FROM cron.job', false, false, '') END
           COLUMNS jobname text, schedule text, command text, database text, username text, active boolean) AS j`;

// Relations of the project: not partitions, not partitions detached for archiving by retention.
const RELS = `
  SELECT c.oid, c.relname::text AS relname, c.relkind
    FROM pg_catalog.pg_class c
   WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
     AND c.relname !~ '_p([0-9]{6}|[0-9]{8}|[0-9]{4}w[0-9]{2})_archived$'`;

/** The catalog as (kind, name, detail) rows; the same query builds the expected state and reads the live one. */
export const LIVE_CATALOG_SQL = `
  WITH rels AS (${RELS}),
  grants AS (${LIVE_GRANTS_SQL.replace(/\$1/g, "'neuralblitz'")})
  SELECT 'relation' AS kind, rels.relname AS name,
         CASE rels.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view' ELSE 'materialized view' END
         || ' owned by ' || pg_catalog.pg_get_userbyid(c.relowner) AS detail
    FROM rels JOIN pg_catalog.pg_class c USING (oid)
  UNION ALL
  SELECT 'column', r.relname || '.' || a.attname,
         pg_catalog.format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
         || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ') STORED'
                 WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) ELSE '' END
         || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY' WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
    FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = r.oid AND d.adnum = a.attnum
  UNION ALL
  SELECT 'constraint', r.relname || '.' || con.conname, pg_catalog.pg_get_constraintdef(con.oid)
    FROM rels r JOIN pg_catalog.pg_constraint con ON con.conrelid = r.oid
  UNION ALL
  SELECT 'index', ic.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid)
    FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  UNION ALL
  SELECT 'row level security', rels.relname,
         CASE WHEN c.relrowsecurity THEN 'enabled' ELSE 'disabled' END || CASE WHEN c.relforcerowsecurity THEN ', forced' ELSE '' END
    FROM rels JOIN pg_catalog.pg_class c USING (oid) WHERE rels.relkind IN ('r', 'p')
  UNION ALL
  SELECT 'policy', r.relname || '.' || p.polname,
         'FOR ' || CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END
         || CASE WHEN p.polpermissive THEN '' ELSE ' RESTRICTIVE' END
         || ' TO ' || (SELECT pg_catalog.string_agg(CASE WHEN x = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x) END, ', ' ORDER BY 1) FROM pg_catalog.unnest(p.polroles) AS x)
         || coalesce(' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', '')
         || coalesce(' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')', '')
    FROM rels r JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid
  UNION ALL
  SELECT 'trigger', r.relname || '.' || t.tgname,
         pg_catalog.pg_get_triggerdef(t.oid) || CASE t.tgenabled WHEN 'D' THEN ' [DISABLED]' WHEN 'R' THEN ' [REPLICA ONLY]' WHEN 'A' THEN ' [ALWAYS]' ELSE '' END
    FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
  UNION ALL
  SELECT 'view definition', relname, pg_catalog.pg_get_viewdef(oid) FROM rels WHERE relkind IN ('v', 'm')
  UNION ALL
  SELECT 'partition key', relname, pg_catalog.pg_get_partkeydef(oid) FROM rels WHERE relkind = 'p'
  UNION ALL
  SELECT 'default partition', r.relname, c.relname::text
    FROM rels r JOIN pg_catalog.pg_inherits i ON i.inhparent = r.oid JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
   WHERE pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text,
         'owned by ' || pg_catalog.pg_get_userbyid(p.proowner) || ', body md5 ' || pg_catalog.md5(p.prosrc)
         || CASE WHEN p.prosecdef THEN ', SECURITY DEFINER' ELSE '' END
         || coalesce(', SET ' || pg_catalog.array_to_string(p.proconfig, ', SET '), '')
    FROM pg_catalog.pg_proc p
   WHERE p.pronamespace IN ('neuralblitz'::regnamespace, 'pgbouncer'::regnamespace)
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep WHERE dep.classid = 'pg_catalog.pg_proc'::regclass AND dep.objid = p.oid AND dep.deptype = 'e')
  UNION ALL
  SELECT 'default privilege', pg_catalog.pg_get_userbyid(d.defaclrole) || ' ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'f' THEN 'functions' WHEN 'S' THEN 'sequences' WHEN 'T' THEN 'types' ELSE 'schemas' END
         || ' in ' || coalesce(n.nspname, 'every schema'),
         (SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END || ' ' || a.privilege_type, ', ' ORDER BY 1)
            FROM pg_catalog.aclexplode(d.defaclacl) a)
    FROM pg_catalog.pg_default_acl d LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
   WHERE d.defaclrole = 'nb_owner'::regrole
  UNION ALL
  SELECT 'grant', g.role || ' ' || g.privilege || ' on ' || g.object_type || ' ' || g.object,
         'GRANT ' || g.privilege || ' ON ' || upper(g.object_type) || ' '
         || CASE WHEN g.object_type IN ('table', 'function') THEN 'neuralblitz.' ELSE '' END || g.object || ' TO ' || g.role
    FROM grants g
   WHERE g.role IN (${MANAGED})${PRIVILEGE_CATALOG_SQL}`;

function dollarQuoted(tag: string, text: string): string {
  if (text.includes(`$${tag}$`)) throw new Error(`cannot embed text containing $${tag}$`);
  return `$${tag}$${text}$${tag}$`;
}

// What to do about each drift, by kind and problem. Part of the SQL so psql gives the same advice.
const FIX_SQL = `
  CASE
    WHEN kind = 'role' THEN 'as the administrator: ALTER ROLE ' || split_part(name, ' ', 1) || ' WITH ' || coalesce(expected, '...') || ' (schema/roles.ts)'
      || CASE WHEN expected IS NULL THEN ': this role is not the stack''s' ELSE '' END
    WHEN kind = 'membership' AND problem = 'extra' THEN 'as the administrator: REVOKE ' || split_part(name, ' member of ', 2) || ' FROM ' || split_part(name, ' member of ', 1)
    WHEN kind = 'membership' AND problem = 'missing' THEN 'as the administrator: GRANT ' || split_part(name, ' member of ', 2) || ' TO ' || split_part(name, ' member of ', 1)
    WHEN kind = 'membership' THEN 'as the administrator: REVOKE ' || split_part(name, ' member of ', 2) || ' FROM ' || split_part(name, ' member of ', 1) || ', then GRANT it again as the model has it (' || expected || ')'
    WHEN kind = 'setting' AND problem = 'extra' THEN 'as the administrator: ' || CASE WHEN name LIKE 'database %' THEN 'ALTER DATABASE ' || split_part(name, ' ', 2) ELSE 'ALTER ROLE ' || split_part(name, ' ', 2) || CASE WHEN name LIKE '% in database %' THEN ' IN DATABASE ' || split_part(name, ' ', 5) ELSE '' END END || ' RESET ' || reverse(split_part(reverse(name), ' ', 1))
    WHEN kind = 'setting' THEN 'as the administrator: ' || CASE WHEN name LIKE 'database %' THEN 'ALTER DATABASE ' || split_part(name, ' ', 2) ELSE 'ALTER ROLE ' || split_part(name, ' ', 2) END || ' SET ' || reverse(split_part(reverse(name), ' ', 1)) || ' = ' || quote_literal(coalesce(expected, '')) || ' (or nbdb up, which sets the bundles'' settings)'
    WHEN kind IN ('column grant', 'grant elsewhere') AND problem = 'extra' THEN 'as the object''s owner or the administrator: ' || replace(replace(actual, 'GRANT ', 'REVOKE '), ' TO ', ' FROM ')
    WHEN kind = 'grant elsewhere' THEN 'as the administrator: ' || expected || ' (nbdb up installs it)'
    WHEN kind = 'extension' AND problem = 'extra' THEN 'not made by any bundle: DROP EXTENSION ' || name || ' (as its owner, after checking nothing uses it), or create it in a bundle if it is meant'
    WHEN kind = 'schema' AND problem = 'extra' THEN 'not made by nbdb: move what it holds and DROP SCHEMA ' || name || ' as the administrator, or create it in a bundle if it is meant'
    WHEN kind = 'schema' THEN 'as the administrator: give schema ' || name || ' back the owner and privileges ' || coalesce(expected, '') || ' (ALTER SCHEMA ... OWNER TO, GRANT/REVOKE ... ON SCHEMA ' || name || ')'
    WHEN kind = 'owner privilege' THEN 'as the administrator: SET ROLE nb_audit; REVOKE ALL ON neuralblitz.' || name || ' FROM nb_audit; GRANT ' || split_part(coalesce(expected, ''), ': ', 2) || ' ON neuralblitz.' || name || ' TO nb_audit'
    WHEN source = 'sql/admin/golden_dag_trail.sql' OR kind = 'event trigger' OR (kind = 'partition trigger' AND name LIKE 'golden_dag_audit%') THEN 'the audit trail''s objects were changed by a superuser: reinstall them as the administrator (psql "$ADMIN_URL" -c ''COMMENT ON ROLE nb_audit IS NULL'' then npx nbdb up re-runs sql/admin/golden_dag_trail.sql), and run npx nbdb audit verify'
    WHEN kind = 'partition trigger' THEN 'as the table''s owner: ALTER TABLE neuralblitz.' || split_part(name, '.', 1) || ' ENABLE TRIGGER ' || split_part(name, '.', 2) || ' (a missing clone: detach and attach the partition again)'
    WHEN kind = 'scheduled job' AND problem = 'extra' THEN 'not the stack''s job: SELECT cron.unschedule(' || quote_literal(name) || ') as the role that scheduled it'
    WHEN kind = 'scheduled job' THEN 'nbdb up schedules the stack''s jobs (infra/topology/maintenanceSchedule.ts): unschedule the changed one first, SELECT cron.unschedule(' || quote_literal(name) || ')'
    WHEN kind = 'grant' AND problem = 'missing' THEN expected || ' (nbdb up converges grants to schema/privileges.ts)'
    WHEN kind = 'grant' THEN replace(replace(actual, 'GRANT ', 'REVOKE '), ' TO ', ' FROM ') || ' (nbdb up does it), or add the grant to schema/privileges.ts if it is meant'
    WHEN kind = 'row level security' THEN 'ALTER TABLE neuralblitz.' || name || ' ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY'
    WHEN kind = 'partition ahead' THEN 'create it: npx nbdb maintain (premake comes from partition_policies)'
    WHEN kind = 'default partition rows' THEN 'move them into their partitions: npx nbdb maintain'
    WHEN kind = 'ledger' AND problem = 'missing' THEN 'apply it: npx nbdb up'
    WHEN kind = 'ledger' AND problem = 'extra' THEN 'this database ran a bundle that is not in sql/: restore its file from version control'
    WHEN kind = 'ledger' THEN 'the database holds another version of this bundle than sql/: restore the file (a migration is never edited; add a new one), or for a repeatable bundle run npx nbdb up'
    WHEN kind = 'default privilege' THEN 'default privileges differ from schema/privileges.ts and sql/repeatable/R010__schema_settings.sql: npx nbdb up sets the model''s'
    WHEN problem = 'extra' THEN 'not made by any bundle: drop it, or add it to a bundle in sql/ if it is meant'
    WHEN kind = 'index' AND problem = 'missing' THEN 'recreate it: ' || expected
    WHEN source LIKE 'sql/repeatable/%' THEN 're-apply ' || source || ' as nb_owner (psql -c ''SET ROLE nb_owner'' -f ' || source || '), or bring it back in that file'
    ELSE 'the database differs from ' || coalesce(source, 'sql/') || ': undo the manual change, or write a new migration that makes it so'
  END`;

/** The generated file: expected state and ledger embedded, the check between markers, then the psql verdict. */
export function renderVerifySql(expected: readonly ExpectedRow[], bundles: readonly Pick<Bundle, "name" | "checksum">[]): string {
  const expectedJson = JSON.stringify(expected.map((e) => ({ kind: e.kind, name: e.name, detail: e.detail, source: e.source })));
  const ledgerJson = JSON.stringify(bundles.map((b) => ({ name: b.name, checksum: b.checksum })));
  return `-- Schema verification: the live database against sql/ and schema/privileges.ts. GENERATED by
-- \`nbdb verify --regenerate\` from a database freshly built by \`nbdb up\`; do not edit by hand.
-- Run it as nb_migrator (or a superuser) on the neuralblitz database:
--   psql "$MIGRATOR_URL" -f sql/verify_schema.sql
-- It lists every drift with what to do, and fails (exit code 3) when there is any; \`nbdb verify\`
-- runs the same check and gives the same verdict.
\\set ON_ERROR_STOP on
BEGIN;
${CHECK_BEGIN}
-- Names print schema-qualified and times in UTC whatever the caller's settings.
SET LOCAL search_path = pg_catalog;
SET LOCAL TimeZone = 'UTC';
CREATE TEMP TABLE nb_verify_drift ON COMMIT DROP AS
WITH expected AS (
  SELECT * FROM jsonb_to_recordset(${dollarQuoted("expected", expectedJson)}::jsonb) AS e(kind text, name text, detail text, source text)
),
live AS (${LIVE_CATALOG_SQL}
),
ledger_expected AS (
  SELECT * FROM jsonb_to_recordset(${dollarQuoted("ledger", ledgerJson)}::jsonb) AS l(name text, checksum text)
),
ledger_live AS (
  SELECT name, checksum FROM neuralblitz.bundle_ledger
),
periods AS (
  SELECT p.table_name, p.period, i,
         neuralblitz.partition_name(p.table_name, p.period, date_trunc(p.period, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + (i || ' ' || p.period)::interval) AS partition
    FROM neuralblitz.partition_policies p, generate_series(0, p.premake) AS i
),
drift AS (
  SELECT coalesce(e.kind, l.kind) AS kind, coalesce(e.name, l.name) AS name,
         CASE WHEN l.name IS NULL THEN 'missing' WHEN e.name IS NULL THEN 'extra' ELSE 'changed' END AS problem,
         e.detail AS expected, l.detail AS actual, e.source
    FROM expected e FULL JOIN live l ON l.kind = e.kind AND l.name = e.name
   WHERE e.detail IS DISTINCT FROM l.detail
     -- pg_cron's jobs are there only where the server preloads it (locally, RDS; not on Docker).
     AND NOT (coalesce(e.kind, l.kind) = 'scheduled job' AND NOT ${CRON_READABLE})
  UNION ALL
  SELECT 'ledger', coalesce(e.name, l.name),
         CASE WHEN l.name IS NULL THEN 'missing' WHEN e.name IS NULL THEN 'extra' ELSE 'changed' END,
         e.checksum, l.checksum, 'sql/'
    FROM ledger_expected e FULL JOIN ledger_live l ON l.name = e.name
   WHERE e.checksum IS DISTINCT FROM l.checksum
     -- Bundles the Pulumi program generates from stack config (infra/database/) have no file in sql/.
     AND NOT (e.name IS NULL AND l.name LIKE 'deploy\\_\\_%')
  UNION ALL
  -- Every partition carries its parent's row triggers, enabled as on the parent; every partition
  -- of the audit trail (and every archived one) refuses TRUNCATE.
  SELECT 'partition trigger', c.relname || '.' || t.tgname, CASE WHEN pt.oid IS NULL THEN 'missing' ELSE 'changed' END,
         'enabled as on ' || par.relname, CASE WHEN pt.oid IS NULL THEN NULL ELSE 'tgenabled ' || pt.tgenabled::text END, 'sql/'
    FROM pg_catalog.pg_inherits i
    JOIN pg_catalog.pg_class par ON par.oid = i.inhparent AND par.relnamespace = 'neuralblitz'::regnamespace
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    JOIN pg_catalog.pg_trigger t ON t.tgrelid = par.oid AND NOT t.tgisinternal AND (t.tgtype & 1) = 1
    LEFT JOIN pg_catalog.pg_trigger pt ON pt.tgrelid = c.oid AND pt.tgparentid = t.oid
   WHERE pt.oid IS NULL OR pt.tgenabled <> t.tgenabled
  UNION ALL
  SELECT 'partition trigger', c.relname || '.refuse_truncate', CASE WHEN t.oid IS NULL THEN 'missing' ELSE 'changed' END,
         'BEFORE TRUNCATE, EXECUTE FUNCTION neuralblitz.golden_dag_refuse_rewrite(), enabled', CASE WHEN t.oid IS NULL THEN NULL ELSE 'tgenabled ' || t.tgenabled::text END, 'sql/admin/golden_dag_trail.sql'
    FROM pg_catalog.pg_class c
    LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'refuse_truncate'
         AND t.tgfoid = pg_catalog.to_regprocedure('neuralblitz.golden_dag_refuse_rewrite()') AND t.tgenabled = 'O'
   WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relname ~ '^golden_dag_audit_(default|p[0-9]{6}(_archived)?)$'
     AND t.oid IS NULL
  UNION ALL
  SELECT 'partition ahead', p.partition, 'missing', 'attached partition of ' || p.table_name, NULL, 'neuralblitz.run_partition_maintenance()'
    FROM periods p
   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                      WHERE i.inhparent = ('neuralblitz.' || p.table_name)::regclass AND c.relname = p.partition)
  UNION ALL
  SELECT 'default partition rows', d.name || '_default', 'changed', '0 rows', d.n || ' rows', 'neuralblitz.run_partition_maintenance()'
    FROM (SELECT 'metrics' AS name, count(*) AS n FROM neuralblitz.metrics_default
          UNION ALL SELECT 'quantum_neuron_history', count(*) FROM neuralblitz.quantum_neuron_history_default
          UNION ALL SELECT 'consciousness_snapshots', count(*) FROM neuralblitz.consciousness_snapshots_default) AS d
   WHERE d.n > 0
)
SELECT kind, name, problem, expected, actual, ${FIX_SQL.trim()} AS fix FROM drift;
${CHECK_END}
SELECT kind, name, problem, fix FROM nb_verify_drift ORDER BY kind, name;
DO $verdict$
DECLARE
  n bigint := (SELECT count(*) FROM nb_verify_drift);
BEGIN
  IF n > 0 THEN
    RAISE EXCEPTION 'schema drift: % problem(s), listed above', n;
  END IF;
  RAISE NOTICE 'schema verified: no drift';
END
$verdict$;
ROLLBACK;
`;
}
