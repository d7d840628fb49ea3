// The AWS platform (prod): an RDS primary with read replicas by index, its parameter group (the shared
// settings RDS allows, pg_cron and pg_stat_statements preloaded, TLS forced), and PgBouncer on ECS
// Fargate in front of the primary. Nothing is reachable from outside the VPC.
import { REPLICATION_USER } from "../topology/replicaBootstrap";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { DATABASE } from "../../schema/roles";
import { AwsConfig, ImageConfig, PoolerConfig, PostgresVersion } from "../config";
import { AwsPooler } from "./awsPooler";
import { POOLER_PORT, poolerFootprint } from "./poolerContainer";
import { PGBOUNCER_EXPORTER_PORT } from "../topology/monitoring";
import { poolerAlarm, rdsAlarms } from "./awsAlarms";
import { connectionBudget } from "../topology/connectionBudget";
import { rdsParameters } from "./rdsParameters";
import { RDS_CA_FILE } from "./rdsCa";
import * as fs from "fs";
import * as path from "path";
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
  /** The pooler's image (RDS needs none), pinned by digest where the config does. */
  readonly images: ImageConfig;
  /** The stack's PostgreSQL major version guard: every server resource depends on it. */
  readonly majorVersion?: pulumi.Resource;
}

export class AwsCluster extends pulumi.ComponentResource implements Cluster {
  readonly primary: pulumi.Output<Endpoint>;
  readonly replicas: pulumi.Output<Endpoint[]>;
  readonly pooler: pulumi.Output<PoolerEndpoint>;
  readonly admin: pulumi.Output<AdminLogin>;
  /** RDS forces TLS; every direct connection verifies it against the Amazon RDS CAs. */
  readonly pgCron = true;
  // The database layer declares every role RDS needs (nb_pgbouncer included) with its password.
  readonly platformRolesSql = undefined;
  readonly serverCaFile = RDS_CA_FILE;
  readonly poolerTls: Cluster["poolerTls"];
  // RDS replicas stream through RDS's own replication user, and REPLICATION needs a superuser RDS does not give.
  readonly platformRoles = [REPLICATION_USER] as const;
  /** aws.restoreFrom: the instance comes with the source's roles and schema (Cluster.restored). */
  readonly restored: boolean;

  constructor(name: string, args: AwsClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("neuralblitz:platform:AwsCluster", name, {}, opts);
    const physical = (logical: string) => `${logical}${args.physicalSuffix}`;
    const { aws: cfg } = args;
    this.restored = cfg.restoreFrom !== undefined;
    const allowed = [...cfg.allowedCidrs];

    // Fixed physical names cannot exist twice: a forced replacement of such a resource must delete the
    // old one first (deleteBeforeReplace), or it fails with "already exists". Where the old one cannot be
    // deleted while in use (security groups), AWS names it from a prefix instead, so both can coexist.
    const fixedName = { parent: this, deleteBeforeReplace: true };
    const subnets = new aws.rds.SubnetGroup(`${name}-subnets`, { name: physical(`${name}-subnets`), subnetIds: [...cfg.subnetIds] }, { parent: this });
    const poolerSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-pooler`,
      {
        namePrefix: physical(`${name}-pooler-`),
        description: "PgBouncer: its load balancer and tasks",
        vpcId: cfg.vpcId,
        ingress: [
          { description: "clients", protocol: "tcp", fromPort: POOLER_PORT, toPort: POOLER_PORT, cidrBlocks: allowed },
          { description: "load balancer to tasks", protocol: "tcp", fromPort: POOLER_PORT, toPort: POOLER_PORT, self: true },
          // PgBouncer's metrics exporter in each task, scraped at the task's address (no listener of the load balancer).
          { description: "metrics", protocol: "tcp", fromPort: PGBOUNCER_EXPORTER_PORT, toPort: PGBOUNCER_EXPORTER_PORT, cidrBlocks: allowed },
        ],
        // Image pulls, Secrets Manager, logs and the database.
        egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }],
      },
      { parent: this },
    );
    const databaseSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-database`,
      {
        namePrefix: physical(`${name}-database-`),
        description: "PostgreSQL primary and replicas",
        vpcId: cfg.vpcId,
        ingress: [
          { description: "clients", protocol: "tcp", fromPort: POSTGRES_PORT, toPort: POSTGRES_PORT, cidrBlocks: allowed },
          { description: "PgBouncer", protocol: "tcp", fromPort: POSTGRES_PORT, toPort: POSTGRES_PORT, securityGroups: [poolerSecurityGroup.id] },
        ],
      },
      { parent: this },
    );
    const guard = args.majorVersion ? [args.majorVersion] : [];
    const maxConnections = connectionBudget(poolerFootprint(cfg.poolerTasks, args.pooler)).maxConnections;
    const parameters = new aws.rds.ParameterGroup(
      `${name}-parameters`,
      { name: physical(`${name}-postgres${args.postgresVersion}`), family: `postgres${args.postgresVersion}`, parameters: rdsParameters(maxConnections) },
      { parent: this, dependsOn: guard },
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
      // Otherwise every change to an instance (class, storage, backups, its parameter group) waits for the
      // maintenance window and shows as drift until then; static parameters still wait for a reboot
      // (their applyMethod is pending-reboot). docs/platforms.md lists which change does what.
      applyImmediately: cfg.applyImmediately,
    };
    // Instances keep their identifiers (clients and replicas use them); protected ones are never replaced.
    const dataOpts = { ...fixedName, protect: args.protectData, dependsOn: guard };
    const primaryIdentifier = physical(`${name}-primary`);
    // A final snapshot name can be used once per account and region: a stack destroyed and made again
    // (or a primary replaced) takes a new one.
    const finalSnapshot = new random.RandomId(`${name}-final-snapshot`, { byteLength: 4 }, { parent: this });
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
        finalSnapshotIdentifier: args.protectData ? pulumi.interpolate`${primaryIdentifier}-final-${finalSnapshot.hex}` : undefined,
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
        replicaHosts: pulumi.all(replicas.map((r) => r.address)),
        pooler: args.pooler,
        authPassword: args.passwords.poolerAuth,
        pooledLogins: args.passwords.pooledLogins,
        readonlyLogin: args.passwords.readonlyLogin,
        tasks: cfg.poolerTasks,
        image: args.images.pgbouncer,
        physicalSuffix: args.physicalSuffix,
        protectData: args.protectData,
        monitorPassword: args.passwords.monitor,
        exporterImage: args.images.pgbouncerExporter,
      },
      { parent: this },
    );

    rdsAlarms(
      name,
      [{ node: "primary", identifier: primary.identifier, replica: false }, ...replicas.map((r, i) => ({ node: `replica-${i}`, identifier: r.identifier, replica: true }))],
      cfg.alarms,
      maxConnections,
      this,
    );
    poolerAlarm(name, { loadBalancer: pooler.alarmDimensions.loadBalancer, targetGroup: pooler.alarmDimensions.targetGroup, tasks: cfg.poolerTasks }, cfg.alarms, this);

    // `address`, not `endpoint`: the latter carries the port.
    const endpoint = (db: aws.rds.Instance) => pulumi.output({ host: db.address, port: db.port });
    this.primary = endpoint(primary);
    this.replicas = pulumi.all(replicas.map(endpoint));
    this.pooler = pooler.endpoint;
    // The URLs through the pooler name its CA as a file: the program writes it where `pulumi up` runs
    // (beside the local stacks' directories); elsewhere, write `pulumi stack output tls` there.
    const poolerCaFile = path.resolve(process.env.NBDB_HOME ?? ".nbdb", `pulumi-${pulumi.getStack()}`, "pooler-ca.pem");
    pooler.caCertificate.apply((pem) => {
      if (pulumi.runtime.isDryRun() || pem === undefined) return;
      fs.mkdirSync(path.dirname(poolerCaFile), { recursive: true });
      fs.writeFileSync(poolerCaFile, pem);
    });
    this.poolerTls = { caCertificate: pooler.caCertificate, caFile: poolerCaFile };
    this.admin = pulumi.secret(
      pulumi.all([this.primary, args.passwords.admin]).apply(([e, password]) => ({ ...e, username: ADMIN_USER, password, superuser: false })),
    );
    this.registerOutputs({ primary: this.primary, replicas: this.replicas, pooler: this.pooler });
  }
}
