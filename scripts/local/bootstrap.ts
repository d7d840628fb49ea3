// What the primary holds before any bundle runs (the roles with their passwords, the database owned
// by nb_owner, the project schema, connect rights and the pooler's lookup function) and the audit
// trail's trust boundary: the superuser's steps of the database plan. Each is idempotent.
import { AUDIT_TRAIL_SQL_FILE, INSTALLED_MARKER_SQL, auditTrailMarker, auditTrailSql } from "../../infra/topology/auditTrail";
import { pgbouncerAuthSql } from "../../infra/topology/pgbouncerAuth";
import { scramSha256Verifier } from "../../infra/topology/scram";
import { DATABASE, ROLES, RoleSpec, SCHEMA, roleSettings, roleSql } from "../../schema/roles";
import { Client } from "pg";
import { withTransaction } from "../db";
import { REPLICATION_USER, rewindGrantsSql } from "../../infra/topology/replicaBootstrap";
import { convergeGrants } from "./grants";
import { withSuperuser } from "./postgresNode";
import { StackState } from "./state";

// The steps of the database plan (infra/database/plan.ts) that only the superuser can do, as the
// local stack runs them (scripts/local/database.ts calls them in plan order). What a first `up`
// creates (roles, database, schema) is created once, while state.json says the primary is not
// bootstrapped yet; what drifts (roles, access) is converged on every run.

/** Step `roles`, first run: every role of schema/roles.ts with its password. */
export async function createRoles(state: StackState): Promise<void> {
  await withSuperuser(state, state.ports.primary, async (c) => {
    for (const role of ROLES) {
      await c.query(roleSql(role, role.login ? scramSha256Verifier(state.passwords[role.name]) : undefined));
    }
  });
}

/** Step `database`: database postgres closed to project roles, the replication role's pg_rewind functions there; on the first run the database, owned by nb_owner, and the pooler's lookup in it. */
export async function ensureDatabase(state: StackState, firstRun: boolean): Promise<void> {
  await withSuperuser(state, state.ports.primary, async (c) => {
    // Database postgres is the administrator's (pg_hba.conf refuses every other login there too).
    // The replica bootstrap creates its slot from there.
    await c.query(`REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC; GRANT CONNECT ON DATABASE postgres TO ${REPLICATION_USER}`);
    // The replica bootstrap (and the re-attach of a former primary) runs pg_rewind from there as the replication role.
    await c.query(rewindGrantsSql());
    if (!firstRun) return;
    const exists = await c.query("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", [DATABASE]);
    if (exists.rowCount === 0) await c.query(`CREATE DATABASE ${DATABASE} OWNER nb_owner`);
  });
  if (firstRun) await withSuperuser(state, state.ports.primary, (c) => c.query(pgbouncerAuthSql()), DATABASE);
}

/** Step `schema`, first run: the project schema owned by nb_owner; PUBLIC creates nothing in schema public. */
export async function createSchema(state: StackState): Promise<void> {
  await withSuperuser(
    state,
    state.ports.primary,
    (c) =>
      c.query(`
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        CREATE SCHEMA IF NOT EXISTS ${SCHEMA} AUTHORIZATION nb_owner;
        REVOKE CREATE, USAGE ON SCHEMA ${SCHEMA} FROM PUBLIC;
      `),
    DATABASE,
  );
}

/**
 * Step `access`: CONNECT on the database and USAGE/CREATE on the schema as the privilege model has
 * them (PUBLIC's CONNECT and TEMPORARY revoked), as nb_owner by the superuser: nb_migrator cannot
 * connect before this. Returns the statements run.
 */
export async function convergeAccess(state: StackState): Promise<string[]> {
  return withSuperuser(state, state.ports.primary, (c) => convergeGrants(c, "project", ["database", "schema"]), DATABASE);
}

/** True when `stored` (pg_authid.rolpassword) is a SCRAM verifier of `password`; the salt is reused. */
function verifierOf(stored: string | null, password: string): string | undefined {
  const m = /^SCRAM-SHA-256\$4096:([^$]+)\$/.exec(stored ?? "");
  if (!m) return undefined;
  const again = scramSha256Verifier(password, Buffer.from(m[1], "base64"));
  return again === stored ? stored : undefined;
}

interface LiveRole {
  rolcanlogin: boolean;
  rolreplication: boolean;
  rolsuper: boolean;
  rolcreatedb: boolean;
  rolcreaterole: boolean;
  rolbypassrls: boolean;
  rolinherit: boolean;
  rolconnlimit: number;
  valid_forever: boolean;
  rolpassword: string | null;
  settings: string[];
  member_of: string[];
}

/** What differs between a live role and its spec (empty when none). */
function roleDrift(spec: RoleSpec, live: LiveRole | undefined, password: string | undefined): string[] {
  if (!live) return ["missing"];
  const drift: string[] = [];
  const attrs =
    live.rolcanlogin === spec.login &&
    live.rolreplication === !!spec.replication &&
    !live.rolsuper && !live.rolcreatedb && !live.rolcreaterole && !live.rolbypassrls && live.rolinherit &&
    live.rolconnlimit === (spec.connectionLimit ?? -1) &&
    live.valid_forever;
  if (!attrs) drift.push("attributes");
  if (password !== undefined && !verifierOf(live.rolpassword, password)) drift.push("password");
  const wanted = Object.entries(roleSettings(spec)).map(([k, v]) => `${k}=${v}`).sort();
  if (JSON.stringify([...live.settings].sort()) !== JSON.stringify(wanted)) drift.push("settings");
  if ((spec.memberOf ?? []).some((g) => !live.member_of.includes(g))) drift.push("membership");
  return drift;
}

/**
 * Bring every role back to schema/roles.ts on every `nbdb up`: attributes, connection limit,
 * role-level settings (in any database) and password. A role that changed itself (nb_app may ALTER
 * ROLE itself SET ... or PASSWORD ...) is repaired and its sessions opened under the tampered state
 * are ended, so the pooler reconnects with the right settings. Reports what it repaired.
 */
export async function convergeRoles(state: StackState): Promise<string[]> {
  return withSuperuser(state, state.ports.primary, async (c: Client) => {
    const { rows } = await c.query(
      `SELECT r.rolname, r.rolcanlogin, r.rolreplication, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolbypassrls, r.rolinherit,
              r.rolconnlimit, r.rolvaliduntil = 'infinity' AS valid_forever, r.rolpassword,
              COALESCE((SELECT array_agg(cfg ORDER BY cfg) FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg WHERE s.setrole = r.oid), '{}') AS settings,
              COALESCE((SELECT array_agg(g.rolname::text) FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '{}') AS member_of
         FROM pg_catalog.pg_authid r WHERE r.rolname = ANY($1)`,
      [ROLES.map((r) => r.name)],
    );
    const live = new Map(rows.map((r) => [r.rolname as string, r as LiveRole]));
    const repaired: string[] = [];
    for (const role of ROLES) {
      const password = role.login ? state.passwords[role.name] : undefined;
      const drift = roleDrift(role, live.get(role.name), password);
      if (drift.length === 0) continue;
      const verifier = password === undefined ? undefined : verifierOf(live.get(role.name)?.rolpassword ?? null, password) ?? scramSha256Verifier(password);
      await c.query(`BEGIN; ${roleSql(role, verifier)} COMMIT;`);
      // Sessions opened under the tampered settings keep them (RESET ALL returns to them): end them.
      await c.query("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()", [role.name]);
      repaired.push(`repaired role ${role.name} (${drift.join(", ")})`);
    }
    return repaired;
  });
}

/**
 * The audit trail's trust boundary (infra/topology/auditTrail.ts), after the bundles: the trail's SQL
 * when this version is not installed yet,
 * and the privilege model's grants on the trail's objects, made as nb_audit. The superuser touches
 * only nb_audit's objects and creates triggers on nb_owner's tables; it runs no code a lower role
 * owns. Reports what it changed.
 */
export async function ensureAuditTrail(state: StackState): Promise<string[]> {
  const changes: string[] = [];
  await withSuperuser(
    state,
    state.ports.primary,
    async (c) => {
      await c.query("SET search_path = pg_catalog, pg_temp");
      const installed = (await c.query(INSTALLED_MARKER_SQL)).rows[0]?.marker;
      if (installed !== auditTrailMarker()) {
        await withTransaction(c, () => c.query(auditTrailSql())).catch((e: Error) => {
          throw new Error(`installing the audit trail (${AUDIT_TRAIL_SQL_FILE}) failed and was rolled back: ${e.message}`);
        });
        changes.push("installed the audit trail's trust boundary (sql/admin/golden_dag_trail.sql)");
      }
      const statements = await convergeGrants(c, "trail");
      if (statements.length > 0) changes.push(`brought grants on the audit trail in line with the privilege model (${statements.length} statements)`);
    },
    DATABASE,
  );
  return changes;
}
