// The stack outputs, in the shape of the local stack's outputs.json (docs/contracts.md, "Outputs"), so
// clients and tools read every stack the same way. No `admin` connection: that is the local stack's alone.
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import { connectionUrl as databaseUrl, stackConnections } from "../client/outputs";
import { DATABASE, LoginRoleName } from "../schema/roles";
import { Cluster, DockerContainers, Endpoint, PoolerEndpoint } from "./platform/types";

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
  /**
   * The CAs the URLs verify against: their files (on the machine that ran `pulumi up`, which the
   * URLs name) and their certificates (PEM), for clients on other machines; absent where there is no TLS.
   */
  readonly tls: pulumi.Output<{ readonly serverCaFile?: string; readonly serverCa?: string; readonly poolerCaFile?: string; readonly poolerCa?: string }>;
  /**
   * Docker stacks: the containers' names and URNs, for nbdb's switchover and failover; null on the
   * others (an undefined stack output makes Pulumi warn on every update).
   */
  readonly docker: pulumi.Output<DockerContainers> | null;
}

/** A connection URL to the project database (verify-full against `caFile` where given); the database layer uses it too, for the administrator and nb_migrator. */
export function connectionUrl(user: string, password: string, at: Endpoint, caFile: string | undefined): string {
  return databaseUrl(user, password, at, DATABASE, caFile);
}

export function stackOutputs(
  stack: string,
  cluster: Cluster,
  passwords: Readonly<Record<LoginRoleName, pulumi.Output<string>>>,
  dataKey: pulumi.Output<string>,
): StackOutputs {
  const { nb_app, nb_readonly, nb_auditor, nb_migrator } = passwords;
  const connections = pulumi
    .all([cluster.primary, cluster.pooler, nb_app, nb_readonly, nb_auditor, nb_migrator])
    .apply(([primary, pooler, app, readonly, auditor, migrator]) =>
      stackConnections({
        database: DATABASE,
        primary,
        pooler,
        passwords: { nb_app: app, nb_readonly: readonly, nb_auditor: auditor, nb_migrator: migrator },
        poolerCaFile: cluster.poolerTls?.caFile,
        serverCaFile: cluster.serverCaFile,
      }),
    );
  return {
    stack,
    database: DATABASE,
    primary: cluster.primary,
    replicas: cluster.replicas,
    pooler: cluster.pooler,
    connections: pulumi.secret(connections),
    dataKey: pulumi.secret(dataKey),
    tls: pulumi.all([cluster.serverCa, cluster.poolerTls?.caCertificate]).apply(([issuedServerCa, poolerCa]) => {
      // A CA a resource of the stack issues comes as its output; a CA shipped with the program (RDS's) is read from its file.
      const serverCa = issuedServerCa ?? (cluster.serverCaFile ? fs.readFileSync(cluster.serverCaFile, "utf8") : undefined);
      return {
        ...(cluster.serverCaFile ? { serverCaFile: cluster.serverCaFile } : {}),
        ...(serverCa ? { serverCa } : {}),
        ...(cluster.poolerTls ? { poolerCaFile: cluster.poolerTls.caFile } : {}),
        ...(poolerCa ? { poolerCa } : {}),
      };
    }),
    docker: cluster.docker ?? null,
  };
}
