// The AWS platform (prod): an RDS primary with read replicas by index, its parameter group (the shared
// settings RDS allows, pg_cron and pg_stat_statements preloaded, TLS forced), and PgBouncer on ECS
// Fargate in front of the primary. Nothing is reachable from outside the VPC.
import { REPLICATION_USER } from "../topology/replicaBootstrap";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { DATABASE } from "../../schema/roles";
import { AwsConfig, PoolerConfig, PostgresVersion } from "../config";
import { AwsPooler } from "./awsPooler";
import { POOLER_PORT } from "./poolerContainer";
import { rdsParameters } from "./rdsParameters";
import { ADMIN_USER, AdminLogin, Cluster, Endpoint, POSTGRES_PORT, PlatformPasswords, PoolerEndpoint } from "./types";

export interface AwsClusterArgs {
  readonly postgresVersion: PostgresVersion;
  readonly replicas: number;
  readonly pooler: PoolerConfig;
  readonly aws: AwsConfig;
  readonly passwords: PlatformPasswords;
  /** Appended to every identifier and name. */
  readonly physicalSuffix: string;
  /** Pulumi `protect` on the instances, RDS deletion protection and a final snapshot of the primary. */
  readonly protectData: boolean;
}

export class AwsCluster extends pulumi.ComponentResource implements Cluster {
  readonly primary: pulumi.Output<Endpoint>;
  readonly replicas: pulumi.Output<Endpoint[]>;
  readonly pooler: pulumi.Output<PoolerEndpoint>;
  readonly admin: pulumi.Output<AdminLogin>;
  readonly sslMode = "require" as const;
  // RDS replicas stream through RDS's own replication user, and REPLICATION needs a superuser RDS does not give.
  readonly platformRoles = [REPLICATION_USER] as const;

  constructor(name: string, args: AwsClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("neuralblitz:platform:AwsCluster", name, {}, opts);
    const physical = (logical: string) => `${logical}${args.physicalSuffix}`;
    const { aws: cfg } = args;
    const allowed = [...cfg.allowedCidrs];

    const subnets = new aws.rds.SubnetGroup(`${name}-subnets`, { name: physical(`${name}-subnets`), subnetIds: [...cfg.subnetIds] }, { parent: this });
    const poolerSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-pooler`,
      {
        name: physical(`${name}-pooler`),
        description: "PgBouncer: its load balancer and tasks",
        vpcId: cfg.vpcId,
        ingress: [
          { description: "clients", protocol: "tcp", fromPort: POOLER_PORT, toPort: POOLER_PORT, cidrBlocks: allowed },
          { description: "load balancer to tasks", protocol: "tcp", fromPort: POOLER_PORT, toPort: POOLER_PORT, self: true },
        ],
        // Image pulls, Secrets Manager, logs and the database.
        egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }],
      },
      { parent: this },
    );
    const databaseSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-database`,
      {
        name: physical(`${name}-database`),
        description: "PostgreSQL primary and replicas",
        vpcId: cfg.vpcId,
        ingress: [
          { description: "clients", protocol: "tcp", fromPort: POSTGRES_PORT, toPort: POSTGRES_PORT, cidrBlocks: allowed },
          { description: "PgBouncer", protocol: "tcp", fromPort: POSTGRES_PORT, toPort: POSTGRES_PORT, securityGroups: [poolerSecurityGroup.id] },
        ],
      },
      { parent: this },
    );
    const parameters = new aws.rds.ParameterGroup(
      `${name}-parameters`,
      { name: physical(`${name}-postgres${args.postgresVersion}`), family: `postgres${args.postgresVersion}`, parameters: rdsParameters() },
      { parent: this },
    );

    const common = {
      instanceClass: cfg.instanceClass,
      storageEncrypted: true,
      maxAllocatedStorage: cfg.maxAllocatedStorageGb,
      dbSubnetGroupName: subnets.name,
      vpcSecurityGroupIds: [databaseSecurityGroup.id],
      parameterGroupName: parameters.name,
      publiclyAccessible: false,
      autoMinorVersionUpgrade: true,
      performanceInsightsEnabled: true,
      performanceInsightsRetentionPeriod: 7,
      enabledCloudwatchLogsExports: ["postgresql"],
    };
    const dataOpts = { parent: this, protect: args.protectData };
    const primaryIdentifier = physical(`${name}-primary`);
    const primary = new aws.rds.Instance(
      `${name}-primary`,
      {
        ...common,
        identifier: primaryIdentifier,
        engine: "postgres",
        engineVersion: args.postgresVersion,
        allocatedStorage: cfg.allocatedStorageGb,
        storageType: "gp3",
        // A restored primary takes its database and master user from the source's backups; the
        // password is set after the restore (the database layer then sets every role's own).
        ...(cfg.restoreFrom
          ? {
              restoreToPointInTime: {
                sourceDbInstanceIdentifier: cfg.restoreFrom.source,
                ...(cfg.restoreFrom.time === "latest" ? { useLatestRestorableTime: true } : { restoreTime: cfg.restoreFrom.time }),
              },
            }
          : { dbName: DATABASE, username: ADMIN_USER }),
        password: args.passwords.admin,
        multiAz: cfg.multiAz,
        // Replicas need the primary's backups; they also give point-in-time recovery.
        backupRetentionPeriod: cfg.backupRetentionDays,
        copyTagsToSnapshot: true,
        deletionProtection: args.protectData,
        skipFinalSnapshot: !args.protectData,
        finalSnapshotIdentifier: args.protectData ? `${primaryIdentifier}-final` : undefined,
      },
      // The restore source is read once, at creation: editing or removing it later must not replace the database.
      { ...dataOpts, ignoreChanges: ["restoreToPointInTime"] },
    );
    // No credentials, engine or database: a replica takes them from its source. It cannot take a final snapshot.
    const replicas = Array.from(
      { length: args.replicas },
      (_, i) =>
        new aws.rds.Instance(
          `${name}-replica-${i}`,
          { ...common, identifier: physical(`${name}-replica-${i}`), replicateSourceDb: primary.identifier, skipFinalSnapshot: true },
          dataOpts,
        ),
    );

    const pooler = new AwsPooler(
      `${name}-pooler`,
      {
        region: cfg.region,
        vpcId: cfg.vpcId,
        subnetIds: cfg.subnetIds,
        securityGroupId: poolerSecurityGroup.id,
        serverHost: primary.address,
        serverPort: primary.port,
        pooler: args.pooler,
        authPassword: args.passwords.poolerAuth,
        pooledLogins: args.passwords.pooledLogins,
        tasks: cfg.poolerTasks,
        physicalSuffix: args.physicalSuffix,
        protectData: args.protectData,
      },
      { parent: this },
    );

    // `address`, not `endpoint`: the latter carries the port.
    const endpoint = (db: aws.rds.Instance) => pulumi.output({ host: db.address, port: db.port });
    this.primary = endpoint(primary);
    this.replicas = pulumi.all(replicas.map(endpoint));
    this.pooler = pooler.endpoint;
    this.admin = pulumi.secret(
      pulumi.all([this.primary, args.passwords.admin]).apply(([e, password]) => ({ ...e, username: ADMIN_USER, password, superuser: false })),
    );
    this.registerOutputs({ primary: this.primary, replicas: this.replicas, pooler: this.pooler });
  }
}
