// The database layer of the Pulumi stacks: the database plan (infra/database/plan.ts, which owns the
// order and says why) declared as resources on the platform's primary, each step's resources
// depending on the previous step's. The local stack runs the same plan (scripts/local/database.ts).
import * as postgresql from "@pulumi/postgresql";
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_PRIVILEGES, GRANTS, OBJECT_OWNER } from "../../schema/privileges";
import { DATABASE, LoginRoleName, ROLES, ROLE_TIMEOUT_DEFAULTS, RoleName, RoleSpec, RoleTimeouts, SCHEMA, TimedRole, ident, roleSettingsSql, roleSql } from "../../schema/roles";
import { loadCatalog } from "../bundles/catalog";
import { PartitionConfig } from "../config";
import { AdminSql } from "../dynamic/adminSql";
import { sqlBundles } from "../dynamic/sqlBundle";
import { connectionUrl } from "../outputs";
import { connectionUrl as databaseUrl } from "../../client/outputs";
import { REPLICATION_USER, rewindGrantsSql } from "../topology/replicaBootstrap";
import { AdminLogin, Cluster } from "../platform/types";
import { JOB_ROLE, maintenanceScheduleSql } from "../topology/maintenanceSchedule";
import { DIRECT_ROOM } from "../topology/connectionBudget";
import { stableScramVerifier } from "../topology/scram";
import { auditTrailSql } from "../topology/auditTrail";
import { adminSetupSql } from "./adminSetup";
import { DATABASE_PLAN, PlanStepId } from "./plan";
import { PUBLIC_DATABASE_REVOKE, defaultPrivilegeArgs, defaultPrivilegeName, grantResources } from "./grants";
import { partitionMaintenanceBundle } from "./partitionMaintenance";

export interface DatabaseLayerArgs {
  readonly cluster: Cluster;
  readonly passwords: Readonly<Record<LoginRoleName, pulumi.Output<string>>>;
  readonly partitions: PartitionConfig;
  /** Role-level timeouts of nb_app and nb_readonly (config key `timeouts`). */
  readonly timeouts?: Readonly<Record<TimedRole, RoleTimeouts>>;
  /** SqlBundles are retainOnDelete: removing one from sql/ only makes Pulumi forget it. */
  readonly protectedStack: boolean;
  /** Pulumi `protect` on the roles and the schema (prod): they carry the application's data and logins. */
  readonly protectData: boolean;
}

export class DatabaseLayer extends pulumi.ComponentResource {
  constructor(name: string, args: DatabaseLayerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("neuralblitz:database:DatabaseLayer", name, {}, opts);
    const { cluster } = args;
    const admin = cluster.admin;
    // The primary, never the pooler: the provider needs a session. RDS gives an address without the port.
    const provider = new postgresql.Provider(
      `${name}-postgresql`,
      {
        host: admin.apply((a) => a.host),
        port: admin.apply((a) => a.port),
        username: admin.apply((a) => a.username),
        password: admin.apply((a) => a.password),
        superuser: admin.apply((a) => a.superuser),
        // verify-full against the platform's CA where the servers speak TLS (RDS), never plain `require`.
        sslmode: cluster.serverCaFile ? "verify-full" : "disable",
        sslrootcert: cluster.serverCaFile,
        database: DATABASE,
        // Its share of the servers' connection budget (DIRECT_ROOM.provider), not its default of 20.
        maxConnections: DIRECT_ROOM.provider,
      },
      { parent: this },
    );
    const sql = { parent: this, provider };
    const data = { ...sql, protect: args.protectData };

    const adminUrl = pulumi.all([cluster.primary, admin]).apply(([at, a]) => connectionUrl(a.username, a.password, at, cluster.serverCaFile));
    // Where the platform creates the replication role itself by SQL (Docker; RDS streams by itself, the
    // local stack grants them in `up`), the replica bootstrap rewinds a former primary as that role (a
    // switchover or failover hands the old primary's volume to a replica): pg_rewind's functions are
    // granted in database postgres, where it connects (a function's privileges are per database).
    const rewindGrants = (after: pulumi.Resource[]): pulumi.Resource[] => {
      if (!cluster.platformRolesSql || !cluster.platformRoles.includes(REPLICATION_USER)) return [];
      const url = pulumi.all([cluster.primary, admin]).apply(([at, a]) => databaseUrl(a.username, a.password, at, "postgres", cluster.serverCaFile));
      return [new AdminSql(`${name}-rewind-grants`, { sql: rewindGrantsSql(), connection: url }, { parent: this, dependsOn: after })];
    };
    const migratorUrl = pulumi.all([cluster.primary, args.passwords.nb_migrator]).apply(([at, password]) => connectionUrl("nb_migrator", password, at, cluster.serverCaFile));

    // A restored primary (Cluster.restored) holds the source's roles: the local stack's idempotent
    // role SQL (schema/roles.ts roleSql) converges them, with this stack's passwords as SCRAM verifiers.
    const restoredRoles = (): pulumi.Resource[] => {
      const specs = ROLES.filter((r) => !cluster.platformRoles.includes(r.name));
      const logins = specs.filter((r) => r.login).map((r) => r.name as LoginRoleName);
      // RDS's master user is no superuser: its role SQL leaves out what only a superuser may name.
      const text = pulumi.all([admin, pulumi.all(logins.map((r) => args.passwords[r]))]).apply(([a, pw]: [AdminLogin, string[]]) =>
        specs
          .map((spec) =>
            roleSql(spec, spec.login ? stableScramVerifier(spec.name, pw[logins.indexOf(spec.name as LoginRoleName)]) : undefined, args.timeouts ?? ROLE_TIMEOUT_DEFAULTS, {
              bySuperuser: a.superuser,
            }),
          )
          .join("\n"),
      );
      const roles = new AdminSql(`${name}-restored-roles`, { sql: pulumi.secret(text), connection: adminUrl }, { parent: this });
      const platformRoles = cluster.platformRolesSql ? [new AdminSql(`${name}-platform-roles`, { sql: cluster.platformRolesSql, connection: adminUrl }, { parent: this })] : [];
      return [roles, ...platformRoles, ...rewindGrants(platformRoles)];
    };

    const grants = grantResources(GRANTS);
    // The provider serializes grants per role and per database only, so two Grants on one object for
    // different roles would update its ACL at once and fail with "tuple concurrently updated"
    // (cyrilgdn/terraform-provider-postgresql#178). Grants on the same object therefore wait for
    // each other: one chain per object, in model order.
    const lastOnObject = new Map<string, postgresql.Grant>();
    const grant = (g: { name: string; args: postgresql.GrantArgs }, dependsOn: pulumi.Resource[]) => {
      const key = grantObjectKey(g.args);
      const previous = lastOnObject.get(key);
      const created = new postgresql.Grant(`${name}-grant-${g.name}`, g.args, { ...sql, dependsOn: previous ? [...dependsOn, previous] : dependsOn });
      lastOnObject.set(key, created);
      return created;
    };

    // One builder per step of the database plan (infra/database/plan.ts): each gets the resources of
    // the step before it to depend on and returns its own. The record names every step; the order
    // is the plan's, never this file's.
    const steps: { readonly [K in PlanStepId]: (after: pulumi.Resource[]) => pulumi.Resource[] } = {
      roles: () => {
        if (cluster.restored) return restoredRoles();
        const roles = new Map<string, postgresql.Role>();
        for (const spec of ROLES.filter((r) => !cluster.platformRoles.includes(r.name))) {
          const memberOf = (spec as RoleSpec).memberOf ?? [];
          const password = spec.login ? args.passwords[spec.name as LoginRoleName] : undefined;
          roles.set(spec.name, new postgresql.Role(`${name}-role-${spec.name}`, roleArgs(spec, password), { ...data, dependsOn: memberOf.flatMap((m) => roles.get(m) ?? []) /* built-in roles (pg_monitor) exist already */ }));
        }
        const allRoles = [...roles.values()];
        // The roles the platform created itself keep the stack's current passwords.
        const platformRoles = cluster.platformRolesSql ? [new AdminSql(`${name}-platform-roles`, { sql: cluster.platformRolesSql, connection: adminUrl }, { parent: this })] : [];
        // Role-level settings (timeouts) exactly as schema/roles.ts renders them, for every role: the
        // provider has no lock_timeout, and one renderer keeps every platform alike.
        const settings = new AdminSql(
          `${name}-role-settings`,
          { sql: ROLES.map((r) => roleSettingsSql(r, args.timeouts ?? ROLE_TIMEOUT_DEFAULTS)).join("\n"), connection: adminUrl },
          { parent: this, dependsOn: [...allRoles, ...platformRoles] },
        );
        return [...allRoles, ...platformRoles, ...rewindGrants(platformRoles), settings];
      },
      database: (after) => [
        new AdminSql(`${name}-admin-setup`, { sql: adminSetupSql(DATABASE, { pgCron: cluster.pgCron }), connection: adminUrl }, { parent: this, dependsOn: after }),
      ],
      // A review database goes with its stack: dropping its schema must take the bundles' objects with
      // it (the provider drops with RESTRICT otherwise, and SqlBundle.delete drops nothing, so destroy
      // would fail). Where the stack keeps its bundles (dev, prod), never cascade.
      schema: (after) => [
        cluster.restored
          ? new AdminSql(`${name}-restored-schema`, { sql: restoredSchemaSql(), connection: adminUrl }, { parent: this, dependsOn: after })
          : new postgresql.Schema(
          `${name}-schema`,
          { name: SCHEMA, database: DATABASE, owner: OBJECT_OWNER, dropCascade: !args.protectedStack && !args.protectData },
          { ...data, dependsOn: after },
          ),
      ],
      // CONNECT and USAGE come before the bundles: nb_migrator needs CONNECT once PUBLIC has lost it.
      access: (after) => [
        grant({ name: "revoke-public-on-database-neuralblitz", args: PUBLIC_DATABASE_REVOKE }, after),
        ...grants.filter((g) => !g.onBundleObjects).map((g) => grant(g, after)),
      ],
      bundles: (after) => sqlBundles(`${name}-bundle`, { bundles: loadCatalog(), connection: migratorUrl, protectedStack: args.protectedStack }, { parent: this, dependsOn: after }),
      // The audit trail's trust boundary, as the administrator, once the bundles made its tables
      // (infra/topology/auditTrail.ts; the local stack runs the same SQL).
      auditTrail: (after) => [new AdminSql(`${name}-audit-trail`, { sql: auditTrailSql(), connection: adminUrl }, { parent: this, dependsOn: after })],
      partitions: (after) =>
        sqlBundles(`${name}-bundle`, { bundles: [partitionMaintenanceBundle(args.partitions)], connection: migratorUrl, protectedStack: args.protectedStack }, { parent: this, dependsOn: after }),
      grants: (after) => [
        ...grants.filter((g) => g.onBundleObjects).map((g) => grant(g, after)),
        ...DEFAULT_PRIVILEGES.map((d) => new postgresql.DefaultPrivileges(`${name}-grant-${defaultPrivilegeName(d)}`, defaultPrivilegeArgs(d), { ...sql, dependsOn: after })),
      ],
      // The scheduled jobs, by the role that runs them (pg_cron lets only a superuser schedule for
      // another role), once the functions they call exist.
      schedule: (after) =>
        cluster.pgCron ? [new AdminSql(`${name}-schedule`, { sql: maintenanceScheduleSql(), connection: migratorUrl, runAs: JOB_ROLE }, { parent: this, dependsOn: after })] : [],
    };
    let after: pulumi.Resource[] = [];
    for (const step of DATABASE_PLAN) {
      const made = steps[step.id](after);
      // A step with nothing to do on this platform (the schedule where the server has no pg_cron) passes its predecessor on.
      if (made.length > 0) after = made;
    }
    this.registerOutputs({});
  }
}

/** The object a Grant changes the ACL of: the database, the schema, or one table or function. */
function grantObjectKey(a: postgresql.GrantArgs): string {
  return [a.objectType, a.database, a.schema ?? "", ...((a.objects as string[] | undefined) ?? [])].join("|");
}

/** A role as schema/roles.ts describes it; its password as a SCRAM verifier, never in plain text. */
function roleArgs(spec: RoleSpec & { name: RoleName }, password: pulumi.Output<string> | undefined): postgresql.RoleArgs {
  return {
    name: spec.name,
    login: spec.login,
    replication: spec.replication ?? false,
    roles: [...(spec.memberOf ?? [])],
    inherit: true,
    superuser: false,
    createDatabase: false,
    createRole: false,
    bypassRowLevelSecurity: false,
    connectionLimit: spec.connectionLimit ?? -1,
    validUntil: "infinity",
    password: password && pulumi.secret(password.apply((p) => stableScramVerifier(spec.name, p))),
  };
}

/** The schema of a restored primary exists already: made sure of, and owned as the model says, without creating it again. */
export function restoredSchemaSql(): string {
  return [`CREATE SCHEMA IF NOT EXISTS ${ident(SCHEMA)} AUTHORIZATION ${ident(OBJECT_OWNER)};`, `ALTER SCHEMA ${ident(SCHEMA)} OWNER TO ${ident(OBJECT_OWNER)};`].join("\n");
}
