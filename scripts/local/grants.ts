// Grants as they are in a live database, compared with the privilege model (schema/privileges.ts):
// read from the catalog, diffed triple by triple, and converged (local stack) with the exact
// GRANT/REVOKE statements that close the gap, so an up-to-date database is not touched.
import { ClientBase } from "pg";
import { withTransaction } from "../db";
import {
  DEFAULT_PRIVILEGES,
  DefaultPrivilegeSpec,
  GRANTS,
  MANAGED_GRANTEES,
  ObjectType,
  Privilege,
  PrivilegeTriple,
  TRAIL_OWNER,
  defaultPrivilegeSql,
  grantSql,
  isTrailObject,
  revokeSql,
  tripleKey,
  triplesOf,
} from "../../schema/privileges";
import { SCHEMA } from "../../schema/roles";

// Every grantable object of the project, with PostgreSQL's implicit default ACL where none is set
// (a function without an ACL is executable by PUBLIC, a database connectable by PUBLIC).
export const LIVE_GRANTS_SQL = `
  WITH objects AS (
    SELECT 'database' AS object_type, d.datname::text AS object, d.datdba AS owner, coalesce(d.datacl, acldefault('d'::"char", d.datdba)) AS acl
      FROM pg_catalog.pg_database d WHERE d.datname = current_database()
    UNION ALL
    SELECT 'schema', n.nspname::text, n.nspowner, coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))
      FROM pg_catalog.pg_namespace n WHERE n.nspname = $1
    UNION ALL
    SELECT 'table', c.relname::text, c.relowner, coalesce(c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))
      FROM pg_catalog.pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       -- Archived partitions of the trail get their privileges from archive_golden_dag_partition().
       AND c.relname !~ '^golden_dag_audit_p[0-9]{6}_archived$'
    UNION ALL
    SELECT 'function', regexp_replace(p.oid::regprocedure::text, '^' || $1 || '\\.', ''), p.proowner, coalesce(p.proacl, acldefault('f'::"char", p.proowner))
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1::regnamespace
  )
  SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END AS role,
         o.object_type, o.object, a.privilege_type AS privilege
    FROM objects o, aclexplode(o.acl) a
   WHERE a.grantee <> o.owner`;

/** The managed roles' and PUBLIC's privileges on the project's objects, as they are now. */
export async function liveGrants(client: ClientBase): Promise<PrivilegeTriple[]> {
  const { rows } = await client.query(LIVE_GRANTS_SQL, [SCHEMA]);
  const managed = new Set<string>([...MANAGED_GRANTEES, "PUBLIC"]);
  return rows
    .filter((r) => managed.has(r.role))
    .map((r) => ({ role: r.role, objectType: r.object_type as ObjectType, object: r.object, privilege: r.privilege as Privilege }));
}

export interface GrantDiff {
  readonly missing: PrivilegeTriple[];
  readonly extra: PrivilegeTriple[];
}

export function diffGrants(wanted: readonly PrivilegeTriple[], live: readonly PrivilegeTriple[]): GrantDiff {
  const liveKeys = new Set(live.map(tripleKey));
  const wantedKeys = new Set(wanted.map(tripleKey));
  return { missing: wanted.filter((t) => !liveKeys.has(tripleKey(t))), extra: live.filter((t) => !wantedKeys.has(tripleKey(t))) };
}

/** Triples grouped back into one statement per role and object. */
function grouped(triples: readonly PrivilegeTriple[]): { role: string; objectType: ObjectType; object: string; privileges: Privilege[] }[] {
  const groups = new Map<string, { role: string; objectType: ObjectType; object: string; privileges: Privilege[] }>();
  for (const t of triples) {
    const key = `${t.role}|${t.objectType}|${t.object}`;
    if (!groups.has(key)) groups.set(key, { role: t.role, objectType: t.objectType, object: t.object, privileges: [] });
    groups.get(key)!.privileges.push(t.privilege);
  }
  return [...groups.values()];
}

async function liveDefaultPrivileges(client: ClientBase): Promise<Set<string>> {
  const { rows } = await client.query(
    `SELECT d.defaclobjtype AS objtype, pg_catalog.pg_get_userbyid(a.grantee) AS role, a.privilege_type AS privilege
       FROM pg_catalog.pg_default_acl d, aclexplode(d.defaclacl) a
      WHERE d.defaclrole = 'nb_owner'::regrole AND d.defaclnamespace = $1::regnamespace AND a.grantee <> 0`,
    [SCHEMA],
  );
  return new Set(rows.map((r) => `${r.role}|${r.objtype === "r" ? "table" : "function"}|${r.privilege}`));
}

function defaultPrivilegeKeys(specs: readonly DefaultPrivilegeSpec[]): string[] {
  return specs.flatMap((d) => d.privileges.map((p) => `${d.role}|${d.objectType}|${p}`));
}

/** Which objects a convergence covers: nb_owner's (as nb_migrator) or the audit trail's (as the administrator). */
export type GrantScope = "project" | "trail";

function inScope(scope: GrantScope, t: { objectType: ObjectType; object: string }): boolean {
  return isTrailObject(t.objectType, t.object) === (scope === "trail");
}

/**
 * Bring the database's grants to the model: GRANT what is missing, REVOKE what is extra, set the
 * default privileges (unless only some `objectTypes` are converged). Returns the statements run (none when the database already matched). The
 * project's objects are granted as nb_owner by a member (nb_migrator); the audit trail's as
 * nb_audit, whose only member is the platform's administrator.
 */
export async function convergeGrants(client: ClientBase, scope: GrantScope = "project", objectTypes?: readonly ObjectType[]): Promise<string[]> {
  // Only some kinds of object (the plan's access step: the database and the schema, before any table exists).
  const covered = (t: { objectType: ObjectType; object: string }) => inScope(scope, t) && (!objectTypes || objectTypes.includes(t.objectType));
  const diff = diffGrants(triplesOf(GRANTS).filter(covered), (await liveGrants(client)).filter(covered));
  const withDefaults = scope === "project" && !objectTypes;
  const liveDefaults = withDefaults ? await liveDefaultPrivileges(client) : new Set<string>();
  const statements = [
    ...grouped(diff.extra).map(revokeSql),
    ...grouped(diff.missing).map(grantSql),
    ...(withDefaults ? DEFAULT_PRIVILEGES.filter((d) => defaultPrivilegeKeys([d]).some((k) => !liveDefaults.has(k))).map(defaultPrivilegeSql) : []),
  ];
  if (statements.length === 0) return [];
  await withTransaction(client, async () => {
    // Grants made as the owner, whoever the member running this is.
    await client.query(`SET LOCAL ROLE ${scope === "project" ? "nb_owner" : TRAIL_OWNER}`);
    await client.query("SET LOCAL search_path = pg_catalog, pg_temp");
    for (const s of statements) {
      await client.query(s).catch((e: Error) => {
        throw new Error(`${s}: ${e.message}. Nothing was granted or revoked. The model is schema/privileges.ts; does the object exist (a bundle not applied?)`);
      });
    }
  });
  return statements;
}
