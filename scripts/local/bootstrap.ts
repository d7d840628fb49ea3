// What the primary holds before any bundle runs: the roles with their passwords, the database owned
// by nb_owner, the project schema, connect rights and the pooler's lookup function. Idempotent.
import { AUDIT_TRAIL_SQL_FILE, INSTALLED_MARKER_SQL, auditTrailMarker, auditTrailSql } from "../../infra/topology/auditTrail";
import { pgbouncerAuthSql } from "../../infra/topology/pgbouncerAuth";
import { scramSha256Verifier } from "../../infra/topology/scram";
import { GRANTS, grantSql } from "../../schema/privileges";
import { convergeGrants } from "../ops/grants";
import { DATABASE, ROLES, SCHEMA, roleSql } from "../../schema/roles";
import { withSuperuser } from "./postgresNode";
import { StackState } from "./state";

export async function bootstrapPrimary(state: StackState): Promise<void> {
  const port = state.ports.primary;
  await withSuperuser(state, port, async (c) => {
    for (const role of ROLES) {
      await c.query(roleSql(role, role.login ? scramSha256Verifier(state.passwords[role.name]) : undefined));
    }
    const exists = await c.query("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", [DATABASE]);
    if (exists.rowCount === 0) await c.query(`CREATE DATABASE ${DATABASE} OWNER nb_owner`);
  });
  // CONNECT from the privilege model now: nb_migrator needs it before it can apply any bundle (the
  // rest of the model is converged after the bundles, when its objects exist).
  const connectGrants = GRANTS.filter((g) => g.objectType === "database").map((g) => `${grantSql(g)};`).join("\n");
  await withSuperuser(
    state,
    port,
    async (c) => {
      await c.query(`
        REVOKE CONNECT, TEMPORARY ON DATABASE ${DATABASE} FROM PUBLIC;
        ${connectGrants}
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        CREATE SCHEMA IF NOT EXISTS ${SCHEMA} AUTHORIZATION nb_owner;
        REVOKE CREATE, USAGE ON SCHEMA ${SCHEMA} FROM PUBLIC;
        ${pgbouncerAuthSql()}
      `);
    },
    DATABASE,
  );
}

/**
 * Roles schema/roles.ts gained since the stack was built (nb_audit on stacks made before the audit
 * trail's boundary), created as the model has them; existing roles are left to verify. Reports them.
 */
export async function ensureRoles(state: StackState): Promise<string[]> {
  return withSuperuser(state, state.ports.primary, async (c) => {
    const present = new Set((await c.query("SELECT rolname FROM pg_catalog.pg_roles")).rows.map((r) => r.rolname as string));
    const created: string[] = [];
    for (const role of ROLES.filter((r) => !present.has(r.name))) {
      await c.query(roleSql(role, role.login ? scramSha256Verifier(state.passwords[role.name]) : undefined));
      created.push(`created role ${role.name}`);
    }
    return created;
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
        await c.query("BEGIN");
        try {
          await c.query(auditTrailSql());
          await c.query("COMMIT");
        } catch (e) {
          await c.query("ROLLBACK").catch(() => undefined);
          throw new Error(`installing the audit trail (${AUDIT_TRAIL_SQL_FILE}) failed and was rolled back: ${(e as Error).message}`);
        }
        changes.push("installed the audit trail's trust boundary (sql/admin/golden_dag_trail.sql)");
      }
      const statements = await convergeGrants(c, "trail");
      if (statements.length > 0) changes.push(`brought grants on the audit trail in line with the privilege model (${statements.length} statements)`);
    },
    DATABASE,
  );
  return changes;
}
