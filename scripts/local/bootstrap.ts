// What the primary holds before any bundle runs: the roles with their passwords, the database owned
// by nb_owner, the project schema, connect rights and the pooler's lookup function. Idempotent.
import { pgbouncerAuthSql } from "../../infra/topology/pgbouncerAuth";
import { scramSha256Verifier } from "../../infra/topology/scram";
import { GRANTS, grantSql } from "../../schema/privileges";
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
