// The database layer of the Pulumi stacks: what `nbdb up` does on the local stack, declared as
// resources on the platform's primary, in the same order (scripts/local/bootstrap.ts, database.ts):
//
//   roles  ->  take over the database (AdminSql)  ->  schema  ->  CONNECT/USAGE grants, PUBLIC revoke
//          ->  SQL bundles  ->  the audit trail's trust boundary (AdminSql)  ->  partition maintenance
//          ->  table/function grants, default privileges
//
// Table and function grants wait for the bundles because a Grant covers only objects that exist.
import * as postgresql from "@pulumi/postgresql";
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_PRIVILEGES, GRANTS, OBJECT_OWNER } from "../../schema/privileges";
import { DATABASE, LoginRoleName, ROLES, RoleName, RoleSpec, SCHEMA } from "../../schema/roles";
import { loadCatalog } from "../bundles/catalog";
import { PartitionConfig } from "../config";
import { AdminSql } from "../dynamic/adminSql";
import { sqlBundles } from "../dynamic/sqlBundle";
import { connectionUrl } from "../outputs";
import { Cluster } from "../platform/types";
import { stableScramVerifier } from "../topology/scram";
import { auditTrailSql } from "../topology/auditTrail";
import { adminSetupSql } from "./adminSetup";
import { PUBLIC_DATABASE_REVOKE, defaultPrivilegeArgs, defaultPrivilegeName, grantResources } from "./grants";
import { partitionMaintenanceBundle } from "./partitionMaintenance";

export interface DatabaseLayerArgs {
  readonly cluster: Cluster;
  readonly passwords: Readonly<Record<LoginRoleName, pulumi.Output<string>>>;
  readonly partitions: PartitionConfig;
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
        sslmode: cluster.sslMode,
        database: DATABASE,
      },
      { parent: this },
    );
    const sql = { parent: this, provider };
    const data = { ...sql, protect: args.protectData };

    const roles = new Map<string, postgresql.Role>();
    for (const spec of ROLES.filter((r) => !cluster.platformRoles.includes(r.name))) {
      const memberOf = (spec as RoleSpec).memberOf ?? [];
      const password = spec.login ? args.passwords[spec.name as LoginRoleName] : undefined;
      roles.set(spec.name, new postgresql.Role(`${name}-role-${spec.name}`, roleArgs(spec, password), { ...data, dependsOn: memberOf.map((m) => roles.get(m)!) }));
    }
    const allRoles = [...roles.values()];

    const adminUrl = pulumi.all([cluster.primary, admin]).apply(([at, a]) => connectionUrl(a.username, a.password, at, cluster.sslMode));
    const adminSetup = new AdminSql(
      `${name}-admin-setup`,
      { sql: adminSetupSql(), connection: adminUrl },
      { parent: this, dependsOn: allRoles },
    );
    const schema = new postgresql.Schema(`${name}-schema`, { name: SCHEMA, database: DATABASE, owner: OBJECT_OWNER }, { ...data, dependsOn: [adminSetup] });

    const grants = grantResources(GRANTS);
    const grant = (g: { name: string; args: postgresql.GrantArgs }, dependsOn: pulumi.Resource[]) => new postgresql.Grant(`${name}-grant-${g.name}`, g.args, { ...sql, dependsOn });
    // CONNECT and USAGE come before the bundles: nb_migrator needs CONNECT once PUBLIC has lost it.
    const accessDependencies = [...allRoles, adminSetup, schema];
    const access = [
      grant({ name: "revoke-public-on-database-neuralblitz", args: PUBLIC_DATABASE_REVOKE }, accessDependencies),
      ...grants.filter((g) => !g.onBundleObjects).map((g) => grant(g, accessDependencies)),
    ];

    const migratorUrl = pulumi.all([cluster.primary, args.passwords.nb_migrator]).apply(([at, password]) => connectionUrl("nb_migrator", password, at, cluster.sslMode));
    const schemaBundles = sqlBundles(
      `${name}-bundle`,
      { bundles: loadCatalog(), connection: migratorUrl, protectedStack: args.protectedStack },
      { parent: this, dependsOn: [...allRoles, schema, ...access] },
    );
    // The audit trail's trust boundary, as the administrator, once the bundles made its tables
    // (infra/topology/auditTrail.ts; the local stack runs the same SQL).
    const auditTrail = new AdminSql(
      `${name}-audit-trail`,
      { sql: auditTrailSql(), connection: adminUrl },
      { parent: this, dependsOn: [schemaBundles[schemaBundles.length - 1]] },
    );
    const [lastBundle] = sqlBundles(
      `${name}-bundle`,
      { bundles: [partitionMaintenanceBundle(args.partitions)], connection: migratorUrl, protectedStack: args.protectedStack },
      { parent: this, dependsOn: [schemaBundles[schemaBundles.length - 1], auditTrail] },
    );

    for (const g of grants.filter((g) => g.onBundleObjects)) grant(g, [lastBundle]);
    for (const d of DEFAULT_PRIVILEGES) {
      new postgresql.DefaultPrivileges(`${name}-grant-${defaultPrivilegeName(d)}`, defaultPrivilegeArgs(d), { ...sql, dependsOn: [lastBundle] });
    }
    this.registerOutputs({});
  }
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
    password: password && pulumi.secret(password.apply((p) => stableScramVerifier(spec.name, p))),
  };
}
