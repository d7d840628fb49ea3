// The pooler's password lookup (PgBouncer `auth_query`), installed in every database the pooler
// serves. Written once; the local stack runs it as the superuser, the Docker and AWS stacks
// through their database layer.

import { POOLER_LOOKUP_LOGIN } from "../../schema/roles";

export const AUTH_USER = POOLER_LOOKUP_LOGIN;
export const AUTH_FUNCTION = "pgbouncer.get_auth";
export const AUTH_QUERY = `SELECT username, password FROM ${AUTH_FUNCTION}($1)`;

/**
 * SQL that creates (or replaces) the lookup function. SECURITY DEFINER so nb_pgbouncer never reads
 * pg_authid itself; search_path pinned against injection (CVE-2025-12819); superusers, replication
 * roles, NOLOGIN roles and roles past VALID UNTIL (CVE-2025-2291) are never returned, so the pooler
 * cannot be used to log in as them. Only nb_pgbouncer may execute it.
 */
export function pgbouncerAuthSql(authUser: string = AUTH_USER): string {
  return `
CREATE SCHEMA IF NOT EXISTS pgbouncer;
REVOKE CREATE, USAGE ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO ${authUser};

CREATE OR REPLACE FUNCTION ${AUTH_FUNCTION}(p_username text)
RETURNS TABLE (username text, password text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT a.rolname::text, a.rolpassword::text
    FROM pg_catalog.pg_authid AS a
   WHERE a.rolname = p_username
     AND a.rolcanlogin
     AND NOT a.rolsuper
     AND NOT a.rolreplication
     AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > pg_catalog.now())
$fn$;

REVOKE EXECUTE ON FUNCTION ${AUTH_FUNCTION}(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ${AUTH_FUNCTION}(text) TO ${authUser};
`;
}
