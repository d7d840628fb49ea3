// The stack outputs, in the shape of the local stack's outputs.json (DESIGN.md, "Contracts"), so
// clients and tools read every stack the same way. No `admin` connection: that is the local stack's alone.
import * as pulumi from "@pulumi/pulumi";
import { UrlTls, connectionUrl as databaseUrl } from "../client/outputs";
import { DATABASE, LoginRoleName } from "../schema/roles";
import { Cluster, Endpoint, PoolerEndpoint } from "./platform/types";

export interface Connections {
  readonly app: string;
  readonly readonly: string;
  readonly auditor: string;
  readonly migrator: string;
}

export interface StackOutputs {
  readonly stack: string;
  readonly database: string;
  readonly primary: pulumi.Output<Endpoint>;
  readonly replicas: pulumi.Output<Endpoint[]>;
  readonly pooler: pulumi.Output<PoolerEndpoint>;
  /** A secret: every URL carries its role's password. */
  readonly connections: pulumi.Output<Connections>;
  /** A secret: the key of the encrypted columns (the local stack keeps it in state.json). */
  readonly dataKey: pulumi.Output<string>;
  /** The CA file the URLs verify the servers with (on the machine that ran `pulumi up`) and, where the program issued it, its PEM. */
  readonly tls: pulumi.Output<{ caFile?: string; caCert?: string }>;
}

/** How direct connections to the cluster's servers ask for TLS. */
export function serverTls(cluster: Pick<Cluster, "sslMode" | "sslRootCert">): UrlTls {
  return { sslMode: cluster.sslMode, rootCert: cluster.sslRootCert };
}

/** A connection URL to the project database; the database layer uses it too, for the administrator and nb_migrator. */
export function connectionUrl(user: string, password: string, at: Endpoint, tls: UrlTls): string {
  return databaseUrl(user, password, at, DATABASE, tls);
}

export function stackOutputs(
  stack: string,
  cluster: Cluster,
  passwords: Readonly<Record<LoginRoleName, pulumi.Output<string>>>,
  dataKey: pulumi.Output<string>,
): StackOutputs {
  const { nb_app, nb_readonly, nb_auditor, nb_migrator } = passwords;
  const poolerTls: UrlTls = cluster.poolerTls ?? { sslMode: "disable" };
  const connections = pulumi
    .all([cluster.primary, cluster.replicas, cluster.pooler, nb_app, nb_readonly, nb_auditor, nb_migrator])
    .apply(([primary, replicas, pooler, app, readonly, auditor, migrator]) => ({
      // The application goes through the pooler (transaction pooling); PgBouncer itself talks TLS to the server.
      app: connectionUrl("nb_app", app, pooler, poolerTls),
      // Reporting reads from the first replica, or the primary when there is none.
      readonly: connectionUrl("nb_readonly", readonly, replicas[0] ?? primary, serverTls(cluster)),
      auditor: connectionUrl("nb_auditor", auditor, pooler, poolerTls),
      // Bundles need a session (advisory locks, DDL), so the migrator connects to the primary.
      migrator: connectionUrl("nb_migrator", migrator, primary, serverTls(cluster)),
    }));
  return {
    stack,
    database: DATABASE,
    primary: cluster.primary,
    replicas: cluster.replicas,
    pooler: cluster.pooler,
    connections: pulumi.secret(connections),
    dataKey: pulumi.secret(dataKey),
    tls: pulumi.output(cluster.caCert).apply((caCert) => ({
      ...(cluster.sslRootCert ? { caFile: cluster.sslRootCert } : {}),
      ...(caCert ? { caCert } : {}),
    })),
  };
}
