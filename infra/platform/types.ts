// What every platform provides, so the stack outputs and the database layer use Docker and AWS
// the same way.
import * as pulumi from "@pulumi/pulumi";
import { LOGIN_ROLES, LoginRoleName, PooledLogin, RoleName } from "../../schema/roles";
import { Endpoint, StackOutputs } from "../../client/outputs";

// One declaration of the endpoints, the applications' (client/outputs.ts); the platforms provide them.
export type { Endpoint };
export type PoolerEndpoint = StackOutputs["pooler"];

/**
 * How the database layer (postgresql.Provider) logs in: to the primary, never the pooler (the
 * provider needs a session), reachable from where `pulumi up` runs.
 */
export interface AdminLogin extends Endpoint {
  readonly username: string;
  readonly password: string;
  /** False on RDS: roles get `rds_superuser` membership instead of SUPERUSER. */
  readonly superuser: boolean;
}

export interface Cluster {
  readonly primary: pulumi.Output<Endpoint>;
  /** Replica i is element i. */
  readonly replicas: pulumi.Output<Endpoint[]>;
  readonly pooler: pulumi.Output<PoolerEndpoint>;
  /** A secret. */
  readonly admin: pulumi.Output<AdminLogin>;
  /**
   * The CA file (a path on the machine running `pulumi up`) that verifies the servers' certificates:
   * direct connections then use TLS with verify-full. Absent where the servers speak no TLS.
   */
  readonly serverCaFile: string | undefined;
  /** That CA's certificate (PEM) where a resource of the stack issues it (so the file may not exist yet while the program runs). */
  readonly serverCa?: pulumi.Output<string>;
  /** The pooler's client-side TLS: the CA (PEM) its certificate chains to, and where the program writes it for the URLs. */
  readonly poolerTls: { readonly caCertificate: pulumi.Output<string>; readonly caFile: string } | undefined;
  /** The server preloads pg_cron, which runs the scheduled jobs (RDS, Docker's built image); the database layer schedules them there. */
  readonly pgCron: boolean;
  /**
   * SQL (a secret) the administrator re-runs whenever it changes, so the roles the platform created
   * itself (Docker's initdb script) keep the stack's current passwords; absent where there are none.
   */
  readonly platformRolesSql: pulumi.Output<string> | undefined;
  /**
   * Where the platform generates the logins' passwords and the data key itself (the local stack's
   * state.json), the stack's connections and the database layer use these instead of the program's.
   */
  readonly rolePasswords?: pulumi.Output<Record<LoginRoleName, string>>;
  readonly dataKey?: pulumi.Output<string>;
  /** Roles of schema/roles.ts the database layer must not create: the platform creates them, or has no use for them. */
  readonly platformRoles: readonly RoleName[];
  /**
   * The primary is another stack's database restored to a point in time (docker.restoreFrom, aws.restoreFrom): its
   * roles and schema exist before the database layer runs, which therefore converges them with
   * idempotent SQL instead of creating them (creating an existing role fails).
   */
  readonly restored?: boolean;
  /** Docker stacks only: the server, pooler and backup containers, for nbdb's switchover and failover. */
  readonly docker?: pulumi.Output<DockerContainers>;
}

/** A container of a Docker stack: its name (docker inspect/exec) and its resource's URN (pulumi up --target). */
export interface ContainerRef {
  readonly container: string;
  readonly urn: string;
}

/** The `docker` stack output (docs/contracts.md, "Outputs"). */
export interface DockerContainers {
  readonly primary: ContainerRef;
  /** Replica i is element i. */
  readonly replicas: ContainerRef[];
  readonly pooler: ContainerRef;
  readonly backup: ContainerRef;
  /** Each server role's own data volume, by name (role -> volume); which one a container mounts is docker.dataVolumes'. */
  readonly volumes: Readonly<Record<string, string>>;
  /** Where every server container mounts its data volume. */
  readonly dataDir: string;
}

/** The superuser the platform creates (POSTGRES_USER on Docker, the RDS master user). */
export const ADMIN_USER = "postgres";
export const POSTGRES_PORT = 5432;

/** The passwords a platform needs before any database-layer resource exists. */
export interface PlatformPasswords {
  readonly admin: pulumi.Input<string>;
  /** nb_replicator's: the Docker replicas stream with it (RDS replicates by itself). */
  readonly replication: pulumi.Input<string>;
  /** nb_pgbouncer's: the pooler logs in with it to run its auth_query. */
  readonly poolerAuth: pulumi.Input<string>;
  /**
   * The logins clients use through the pooler (nb_app, nb_auditor). Where the pooler cannot ask the
   * server for SCRAM secrets (RDS lets no role read pg_authid), it lists their verifiers instead.
   */
  readonly pooledLogins: Readonly<Record<PooledLogin, pulumi.Input<string>>>;
  /** nb_backup's (infra/topology/pgbackrest.ts): pgBackRest connects as it where the platform runs it (Docker). */
  readonly backup: pulumi.Input<string>;
  /**
   * nb_readonly's, where the pooler lists verifiers (RDS) for its read-only entry; nb_readonly is
   * served through the pooler but not pooler-only (the client falls back to the primary directly).
   */
  readonly readonlyLogin?: pulumi.Input<string>;
  /** nb_monitor's: the metrics exporter container logs in with it (Docker). */
  readonly monitor?: pulumi.Input<string>;
}

export { POOLED_LOGINS } from "../../schema/roles";
export type { PooledLogin };

/** The logins' passwords a stack uses: the platform's own where it generates them, else the program's. */
export function rolePasswordsOf(
  cluster: Pick<Cluster, "rolePasswords">,
  generated: Readonly<Record<LoginRoleName, pulumi.Output<string>>>,
): Readonly<Record<LoginRoleName, pulumi.Output<string>>> {
  const own = cluster.rolePasswords;
  if (!own) return generated;
  return Object.fromEntries(LOGIN_ROLES.map((r) => [r, pulumi.secret(own.apply((p) => p[r]))])) as Record<LoginRoleName, pulumi.Output<string>>;
}
