// The Docker platform (dev and review stacks): a primary, streaming replicas and PgBouncer as
// containers on one network, each server's data in a named volume, ports published on 127.0.0.1;
// the servers run an image the program builds from the pinned postgres image (pg_cron, pgBackRest),
// and a backup container takes pgBackRest backups on the shared schedule into a repository volume
// the primary archives its WAL to. With docker.restoreFrom, a one-shot restore container first makes
// the new stack's empty primary volume another stack's database as of a point in time.
import { REPLICATION_USER } from "../topology/replicaBootstrap";
import { archiveCommand, backupCrontab, BACKUP_ROLE, RESTORE_REFUSED_EXIT, renderPgbackrestConf, restoreScript, shellQuote } from "../topology/pgbackrest";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { DATABASE } from "../../schema/roles";
import { DockerConfig, DockerRestoreFrom, ImageConfig, MAX_REPLICAS, PoolerConfig, PostgresVersion, ServerRole, mountedVolume, serverRoles } from "../config";
import { renderHba, serverSettings, settingsArgs } from "../topology/postgresSettings";
import { renderPgbouncerAuthFile } from "../topology/pgbouncerIni";
import { replicaBootstrapScript, replicaSlotName, slotWatchScript } from "../topology/replicaBootstrap";
import { ReplicationSlot } from "../dynamic/replicationSlot";
import { TlsCertificates } from "../dynamic/tlsCertificates";
import { LOOPBACK_NAMES } from "../topology/tls";
import { connectionUrl } from "../../client/outputs";
import { INIT_SCRIPT_ROLES, primaryInitSql, restoreFinishSql } from "./dockerPrimaryInit";
import {
  PGBOUNCER_EXPORTER_IMAGE_CONTEXT,
  PGBOUNCER_EXPORTER_IMAGE_UID,
  PGBOUNCER_EXPORTER_LOCAL_REPOSITORY,
  PGBOUNCER_IMAGE_UID,
  POSTGRES_EXPORTER_IMAGE_UID,
  POSTGRES_IMAGE_CONTEXT,
  POSTGRES_IMAGE_UID,
  pgbouncerExporterImageBuild,
  postgresImageBuild,
} from "./images";
import { MONITOR_ROLE, postgresExporterQueries } from "../topology/monitoring";
import { stableScramVerifier } from "../topology/scram";
import { DOCKER_EXPORTER_START, EXPORTER_CA_FILE, EXPORTER_CONFIG_FILE, EXPORTER_PASSWORD_FILE, PGBOUNCER_EXPORTER_PORT, containerExporterYaml } from "./pgbouncerExporterContainer";
import {
  POOLER_AUTH_FILE,
  POOLER_CERT_FILE,
  POOLER_HEALTHCHECK,
  POOLER_INI_FILE,
  POOLER_KEY_FILE,
  POOLER_PORT,
  POOLER_SERVER_CA_FILE,
  containerPoolerIni,
  poolerFootprint,
} from "./poolerContainer";
import { connectionBudget } from "../topology/connectionBudget";
import { ADMIN_USER, AdminLogin, Cluster, DockerContainers, Endpoint, POSTGRES_PORT, PlatformPasswords, PoolerEndpoint } from "./types";

export interface DockerClusterArgs {
  /** The Pulumi stack's name, which the primary's refusal names in the command that heals it. */
  readonly stack: string;
  readonly postgresVersion: PostgresVersion;
  readonly replicas: number;
  readonly pooler: PoolerConfig;
  readonly docker: DockerConfig;
  readonly passwords: PlatformPasswords;
  /** Appended to every container, volume and network name. */
  readonly physicalSuffix: string;
  /** Protect the data volumes from `pulumi destroy`. */
  readonly protectData: boolean;
  /** Image references, pinned by digest where the config does (infra/config.ts). */
  readonly images: ImageConfig;
  /** The stack's PostgreSQL major version guard: every server resource depends on it. */
  readonly majorVersion?: pulumi.Resource;
  /** Where the stack's CA certificate is written on the machine running `pulumi up` (the outputs' URLs name it). */
  readonly caFile: string;
}

/** Dev databases are reachable from this host only. */
const PUBLISH_ADDRESS = "127.0.0.1";
/** Where every server container mounts its data volume (the image's PGDATA). */
export const DATA_DIR = "/var/lib/postgresql/data";
const CONF_DIR = "/etc/postgresql/neuralblitz";
const HBA_FILE = `${CONF_DIR}/pg_hba.conf`;
const ADMIN_PASSWORD_FILE = `${CONF_DIR}/admin-password`;
// pgBackRest: its configuration (the primary's and the backup container's), the backup role's
// password, the repository volume, the schedule, and the directories Debian's package creates.
const PGBACKREST_CONF = `${CONF_DIR}/pgbackrest.conf`;
const BACKUP_PASSFILE = `${CONF_DIR}/backup.pgpass`;
const BACKUP_REPO_DIR = "/var/lib/pgbackrest";
const BACKUP_LOG_DIR = "/var/log/pgbackrest";
const BACKUP_CRONTAB = "/etc/cron.d/neuralblitz-backup";
// A point-in-time restore (docker.restoreFrom): the source's repository, mounted read-only, its
// pgBackRest configuration, the script and the SQL that finishes the restored primary.
const SOURCE_REPO_DIR = "/var/lib/pgbackrest-source";
const SOURCE_PGBACKREST_CONF = `${CONF_DIR}/pgbackrest-source.conf`;
const RESTORE_SCRIPT_FILE = `${CONF_DIR}/restore.sh`;
const RESTORE_FINISH_SQL_FILE = `${CONF_DIR}/restore-finish.sql`;
const SOCKET_DIR = "/var/run/postgresql";
const REPLICATION_PASSWORD_FILE = `${CONF_DIR}/replication-password`;
const REPLICA_BOOTSTRAP_FILE = `${CONF_DIR}/replica-bootstrap.sh`;
const REPLICA_SLOT_WATCH_FILE = `${CONF_DIR}/replica-slot-watch.sh`;
// Each server's certificate and key (the key the server user's, mode 0600, as PostgreSQL demands) and the CA.
const CA_FILE = `${CONF_DIR}/ca.crt`;
const CERT_FILE = `${CONF_DIR}/server.crt`;
const KEY_FILE = `${CONF_DIR}/server.key`;
const MiB = 1024 * 1024;
/** The exporter container's files and port (the image's default). */
const EXPORTER_DIR = "/etc/postgres-exporter";
const EXPORTER_PORT = 9187;

/**
 * Clients reach the servers over the Docker network (published ports arrive from its gateway), so
 * `samenet` is the network. The image's init scripts connect over the socket as the OS user postgres.
 */
const HBA = renderHba(["samenet"], REPLICATION_USER) + `local all ${ADMIN_USER} peer\n`;

/**
 * Runs as root before the image's entrypoint: takes the base backup as postgres (first start only; the
 * shared script leaves an existing cluster alone), then starts the standby the image's usual way. The
 * password comes from a file so it never shows in `docker inspect`.
 */
const REPLICA_ENTRYPOINT = [
  "set -eu",
  'mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"',
  `PGPASSWORD="$(cat ${REPLICATION_PASSWORD_FILE})" gosu postgres sh ${REPLICA_BOOTSTRAP_FILE}`,
  // Beside the server: a lost slot stops it, and the restart takes the replica again (the bootstrap above).
  `(PGPASSWORD="$(cat ${REPLICATION_PASSWORD_FILE})" exec gosu postgres sh ${REPLICA_SLOT_WATCH_FILE}) &`,
  'exec docker-entrypoint.sh "$@"',
].join("\n");

/** Why the primary container refused to start: its volume holds a standby's data (standbyGuardEntrypoint). */
export function standbyDataMessage(stack: string, container: string): string {
  return (
    `${container}: the data volume this container mounts holds a standby's data (standby.signal in ${DATA_DIR}), and the primary must never start on it: ` +
    `docker.dataVolumes was changed by hand or a switchover is unfinished. npx nbdb switchover --pulumi-stack ${stack} --resume finishes or undoes it. Nothing was changed.`
  );
}

/**
 * The primary container's entrypoint where the stack has docker.dataVolumes (runs as root, before the
 * image's): a volume holding standby.signal is a replica's data (a switchover not finished, or the key
 * edited by hand), on which the primary would start as a standby; it stops with the message and exit
 * code 1 instead, changing nothing. Otherwise the image's entrypoint, unchanged.
 */
export function standbyGuardEntrypoint(stack: string, container: string): string {
  return [
    'if [ -e "$PGDATA/standby.signal" ]; then',
    `  echo ${shellQuote(standbyDataMessage(stack, container))} >&2`,
    "  exit 1",
    "fi",
    'exec docker-entrypoint.sh "$@"',
  ].join("\n");
}

/** Runs as root: the restore script as postgres on the (new, empty) data volume; the settings are its arguments. */
const RESTORE_ENTRYPOINT = ['set -eu', 'mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"', `exec gosu postgres sh ${RESTORE_SCRIPT_FILE} "$@"`].join("\n");

/**
 * What the restore container's exit code means for the primary, which waits for it: 0 (restored
 * now or before) lets it start; anything else stops `pulumi up` before the primary is created or
 * changed, so an empty volume never becomes a fresh database in place of the restore.
 */
export function restoreOutcome(exitCode: number | undefined, container: string, resource = "nbdb-restore"): void {
  if (exitCode === 0) return;
  if (exitCode === RESTORE_REFUSED_EXIT) {
    throw new Error(
      `docker.restoreFrom: the primary's data volume already holds a database (or other files) that no restore of this stack made; ` +
        `the key only creates a new stack's primary. Remove it: pulumi config rm --path docker.restoreFrom. Nothing was changed (docker logs ${container} says what it found).`,
    );
  }
  throw new Error(
    `docker.restoreFrom: the restore into the primary's data volume failed (exit code ${exitCode}); docker logs ${container} says why. ` +
      `Fix the cause, then run it again (it resumes): pulumi up --replace <the URN of ${resource}, which pulumi stack --show-urns lists>`,
  );
}

function publishedPort(container: docker.Container, internal: number): pulumi.Output<number> {
  return container.ports.apply((ports) => {
    const external = ports?.find((p) => p.internal === internal)?.external;
    if (external === undefined) throw new Error(`container port ${internal} is not published`);
    return external;
  });
}

/**
 * Durations in the form the provider reads back (Go's time.Duration: "2m0s", not "120s"); any other
 * spelling of the same time shows as an update of every container on every preview.
 */
function healthcheck(test: string[]): docker.types.input.ContainerHealthcheck {
  return { tests: ["CMD", ...test], interval: "5s", timeout: "5s", retries: 6, startPeriod: "2m0s" };
}

export class DockerCluster extends pulumi.ComponentResource implements Cluster {
  readonly primary: pulumi.Output<Endpoint>;
  readonly replicas: pulumi.Output<Endpoint[]>;
  readonly pooler: pulumi.Output<PoolerEndpoint>;
  readonly admin: pulumi.Output<AdminLogin>;
  /** The built image has pg_cron, which the servers preload: the database layer schedules the jobs there. */
  readonly pgCron = true;
  readonly platformRolesSql: pulumi.Output<string>;
  readonly serverCaFile: string;
  readonly serverCa: pulumi.Output<string>;
  readonly poolerTls: { readonly caCertificate: pulumi.Output<string>; readonly caFile: string };
  readonly platformRoles = INIT_SCRIPT_ROLES;
  readonly restored: boolean;
  readonly docker: pulumi.Output<DockerContainers>;

  constructor(name: string, args: DockerClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("neuralblitz:platform:DockerCluster", name, {}, opts);
    const physical = (logical: string) => `${logical}${args.physicalSuffix}`;
    const { docker: cfg } = args;
    this.restored = cfg.restoreFrom !== undefined;

    // One CA per stack; each server's certificate names its container (how the other containers
    // reach it) and the loopback addresses its published port is reached on from this host.
    const serverNodes = ["primary", ...Array.from({ length: args.replicas }, (_, i) => `replica-${i}`), "pooler"];
    const certificates = new TlsCertificates(
      `${name}-tls`,
      {
        label: physical(name),
        servers: serverNodes.map((node) => ({ name: physical(`${name}-${node}`), dnsNames: [physical(`${name}-${node}`), ...LOOPBACK_NAMES.dnsNames], ipAddresses: [...LOOPBACK_NAMES.ipAddresses] })),
        caFile: args.caFile,
      },
      { parent: this },
    );
    this.serverCaFile = args.caFile;
    this.serverCa = certificates.caCert;
    // The pooler's certificate comes from the same CA.
    this.poolerTls = { caCertificate: certificates.caCert, caFile: args.caFile };
    const tlsUploads = (node: string, files: { ca: string; cert: string; key: string }, owner: string): docker.types.input.ContainerUpload[] => {
      const pair = certificates.pair(physical(`${name}-${node}`));
      return [
        { file: files.ca, content: certificates.caCert },
        { file: files.cert, content: pair.cert },
        { file: files.key, content: pair.key, owner, permissions: "0600" },
      ];
    };
    const serverTlsUploads = (node: string) => tlsUploads(node, { ca: CA_FILE, cert: CERT_FILE, key: KEY_FILE }, POSTGRES_IMAGE_UID);

    const network = new docker.Network(`${name}-network`, { name: physical(`${name}-network`), driver: "bridge" }, { parent: this });
    const networksAdvanced = [{ name: network.name }];
    // Images are shared by every stack on the host: destroying one stack must not remove them.
    const guard = args.majorVersion ? [args.majorVersion] : [];
    // The pinned postgres image plus pg_cron and pgBackRest, built here and never pushed; the
    // containers run its image id (repoDigest of a local image), so a rebuild replaces them.
    const build = postgresImageBuild(args.images.postgres, args.postgresVersion);
    const postgresImage = new docker.Image(
      `${name}-postgres-image`,
      { imageName: build.imageName, skipPush: true, build: { context: POSTGRES_IMAGE_CONTEXT, dockerfile: `${POSTGRES_IMAGE_CONTEXT}/Dockerfile`, args: build.args } },
      { parent: this, dependsOn: guard },
    );
    const stanza = physical(name);
    const pgbackrestConf = renderPgbackrestConf({
      stanza,
      repoPath: BACKUP_REPO_DIR,
      logPath: BACKUP_LOG_DIR,
      lockPath: "/tmp/pgbackrest",
      spoolPath: "/var/spool/pgbackrest",
      pgPath: DATA_DIR,
      pgPort: POSTGRES_PORT,
    });
    // Beside the data: destroying the stack keeps it where the data is protected.
    const backupRepo = new docker.Volume(`${name}-backup-repo`, { name: physical(`${name}-backup-repo`) }, { parent: this, protect: args.protectData, dependsOn: guard });

    // Sized once for MAX_REPLICAS, so that scaling never changes (and restarts) the primary.
    const sizing = { memoryBytes: cfg.nodeMemoryMb * MiB, cpus: cfg.nodeCpus };
    // max_connections from the pooler's settings (one PgBouncer container), the same on every node.
    const maxConnections = connectionBudget(poolerFootprint(1, args.pooler)).maxConnections;
    const settingsOf = (archive?: { command: string }) => ({
      ...serverSettings(sizing, MAX_REPLICAS, { maxConnections, tls: { certFile: CERT_FILE, keyFile: KEY_FILE }, pgCron: { database: DATABASE }, archive }),
      hba_file: HBA_FILE,
    });
    // One volume per role, named for it; which of them a role's container mounts is docker.dataVolumes' (mountedVolume).
    const dataVolumes = new Map<ServerRole, docker.Volume>(
      serverRoles(args.replicas).map((role) => [
        role,
        new docker.Volume(`${name}-${role}-data`, { name: physical(`${name}-${role}-data`) }, { parent: this, protect: args.protectData, dependsOn: guard }),
      ]),
    );
    const dataVolume = (role: ServerRole): docker.Volume => dataVolumes.get(role)!;
    // A fixed container name cannot be taken by the replacement while the old container holds it.
    const replaceable = { parent: this, deleteBeforeReplace: true };
    const server = (node: ServerRole, hostPort: number | undefined, extra: Partial<docker.ContainerArgs>, dependsOn: pulumi.Resource[] = [], opts: { archive?: { command: string }; volumes?: docker.types.input.ContainerVolume[] } = {}) => {
      const volume = dataVolume(mountedVolume(cfg, node));
      const container = new docker.Container(
        `${name}-${node}`,
        {
          name: physical(`${name}-${node}`),
          image: postgresImage.repoDigest,
          restart: "unless-stopped",
          networksAdvanced,
          volumes: [{ volumeName: volume.name, containerPath: DATA_DIR }, ...(opts.volumes ?? [])],
          ports: [{ internal: POSTGRES_PORT, external: hostPort, ip: PUBLISH_ADDRESS }],
          memory: cfg.nodeMemoryMb,
          command: ["postgres", ...settingsArgs({ ...settingsOf(opts.archive), cluster_name: physical(`${name}-${node}`) })],
          // Without -h, pg_isready passes on the socket of the image's init-time server.
          healthcheck: healthcheck(["pg_isready", "-q", "-h", "127.0.0.1", "-p", String(POSTGRES_PORT)]),
          wait: true,
          waitTimeout: 600,
          ...extra,
        },
        { ...replaceable, dependsOn: [...guard, ...dependsOn] },
      );
      return container;
    };

    // The containers' names as plain values, not the containers' outputs: what reads them (the
    // replicas' scripts, the pooler's ini, the exporters, the backup's environment) never depends on
    // a container's outputs, so a container made again (a switchover) leaves them as they are.
    const containerName = (node: string) => physical(`${name}-${node}`);
    const primaryHostName = containerName("primary");
    const initSql = pulumi
      .all([args.passwords.replication, args.passwords.poolerAuth, args.passwords.backup])
      .apply(([replication, poolerAuth, backup]) => primaryInitSql({ replication, poolerAuth, backup }));
    const primaryEnvs = [`POSTGRES_USER=${ADMIN_USER}`, `POSTGRES_DB=${DATABASE}`, `POSTGRES_PASSWORD_FILE=${ADMIN_PASSWORD_FILE}`, "POSTGRES_INITDB_ARGS=--data-checksums"];
    const restore = cfg.restoreFrom && this.restoreContainer(name, physical, cfg.restoreFrom, {
      image: postgresImage.repoDigest,
      volume: dataVolume("primary"),
      command: settingsArgs({ ...settingsOf(), cluster_name: physical(`${name}-primary`) }),
      memory: cfg.nodeMemoryMb,
      uploads: [{ file: HBA_FILE, content: HBA }, ...serverTlsUploads("primary")],
      passwords: args.passwords,
      dependsOn: guard,
    });
    // The primary archives every finished WAL segment into the repository volume; a replica only once promoted.
    const archive = { command: archiveCommand(PGBACKREST_CONF, stanza, DATA_DIR) };
    const primary = server(
      "primary",
      cfg.primaryPort,
      {
        // The image's initdb must never run in place of a restore that failed or was refused: the primary waits for it.
        envs: restore ? restore.exitCode.apply((code) => (restoreOutcome(code, physical(`${name}-restore`), `${name}-restore`), primaryEnvs)) : primaryEnvs,
        // Once volumes may change hands (the key exists), the primary refuses a standby's data; without it, as before.
        entrypoints: ["/bin/sh", "-c", standbyGuardEntrypoint(args.stack, primaryHostName), "primary-entrypoint"],
        uploads: [
          { file: HBA_FILE, content: HBA },
          { file: ADMIN_PASSWORD_FILE, content: args.passwords.admin, owner: POSTGRES_IMAGE_UID, permissions: "0600" },
          ...serverTlsUploads("primary"),
          { file: PGBACKREST_CONF, content: pgbackrestConf },
          { file: "/docker-entrypoint-initdb.d/10-neuralblitz-platform-roles.sql", content: initSql },
        ],
      },
      restore ? [restore] : [],
      { archive, volumes: [{ volumeName: backupRepo.name, containerPath: BACKUP_REPO_DIR }] },
    );

    // The primary's host port: the config's when it fixes one (nbdb switchover pins it), else the one Docker published.
    const primaryPort = cfg.primaryPort !== undefined ? pulumi.output(cfg.primaryPort) : publishedPort(primary, POSTGRES_PORT);
    // The administrator's URL of the primary from where `pulumi up` runs (its published port).
    const adminUrl = pulumi
      .all([primaryPort, args.passwords.admin])
      .apply(([port, password]) => connectionUrl(ADMIN_USER, password, { host: PUBLISH_ADDRESS, port }, DATABASE, args.caFile));
    const replicas = Array.from({ length: args.replicas }, (_, i) =>
      server(
        `replica-${i}`,
        cfg.replicaBasePort === undefined ? undefined : cfg.replicaBasePort + i,
        {
          entrypoints: ["/bin/sh", "-c", REPLICA_ENTRYPOINT, "replica-entrypoint"],
          uploads: [
            { file: HBA_FILE, content: HBA },
            { file: REPLICATION_PASSWORD_FILE, content: args.passwords.replication, permissions: "0600" },
            ...serverTlsUploads(`replica-${i}`),
            { file: PGBACKREST_CONF, content: pgbackrestConf },
            {
              file: REPLICA_BOOTSTRAP_FILE,
              content: replicaBootstrapScript({ primaryHost: primaryHostName, primaryPort: POSTGRES_PORT, replicationUser: REPLICATION_USER, index: i, caFile: CA_FILE, waitSeconds: 300 }),
            },
            {
              file: REPLICA_SLOT_WATCH_FILE,
              content: slotWatchScript({ primaryHost: primaryHostName, primaryPort: POSTGRES_PORT, replicationUser: REPLICATION_USER, index: i, caFile: CA_FILE }),
            },
          ],
        },
        [primary, new ReplicationSlot(`${name}-replica-${i}-slot`, { slotName: replicaSlotName(i), connection: adminUrl }, { parent: this, dependsOn: [primary] })],
        // Archiving set up as on the primary (a standby does not archive with archive_mode=on): once
        // promoted by a switchover or failover, the replica archives its new timeline's history file
        // and the old timeline's last, partial segment at once, as every local node does.
        { archive, volumes: [{ volumeName: backupRepo.name, containerPath: BACKUP_REPO_DIR }] },
      ),
    );

    const pgbouncerImage = new docker.RemoteImage(`${name}-pgbouncer-image`, { name: args.images.pgbouncer, keepLocally: true }, { parent: this });
    const pooler = new docker.Container(
      `${name}-pooler`,
      {
        name: physical(`${name}-pooler`),
        image: pgbouncerImage.imageId,
        restart: "unless-stopped",
        networksAdvanced,
        ports: [{ internal: POOLER_PORT, external: cfg.poolerPort, ip: PUBLISH_ADDRESS }],
        entrypoints: ["pgbouncer"],
        command: [POOLER_INI_FILE],
        uploads: [
          {
            file: POOLER_INI_FILE,
            // The replicas by container name (their certificates name it), so the read-only entry follows `replicas`.
            content: containerPoolerIni(
              { host: primaryHostName, port: POSTGRES_PORT, tls: true, clientTls: true, replicaHosts: replicas.map((_, i) => containerName(`replica-${i}`)) },
              args.pooler,
            ),
          },
          ...tlsUploads("pooler", { ca: POOLER_SERVER_CA_FILE, cert: POOLER_CERT_FILE, key: POOLER_KEY_FILE }, PGBOUNCER_IMAGE_UID),
          {
            file: POOLER_AUTH_FILE,
            // With nb_monitor's SCRAM verifier (never its password), as the local stack's: the PgBouncer
            // exporter logs in to the admin console as that stats user.
            content: pulumi
              .all([args.passwords.poolerAuth, args.passwords.monitor])
              .apply(([poolerAuth, monitor]) => renderPgbouncerAuthFile(poolerAuth, monitor === undefined ? {} : { [MONITOR_ROLE]: stableScramVerifier(MONITOR_ROLE, monitor) })),
            owner: PGBOUNCER_IMAGE_UID,
            permissions: "0600",
          },
        ],
        healthcheck: healthcheck(POOLER_HEALTHCHECK),
        wait: true,
        waitTimeout: 120,
      },
      // After the servers, as when its ini read their containers' names.
      { ...replaceable, dependsOn: [primary, ...replicas] },
    );

    // PostgreSQL's metrics exporter with the project's queries, as nb_monitor over verified TLS (its
    // password as a file, never in the environment); published on 127.0.0.1 on a port Docker picks.
    if (args.passwords.monitor !== undefined) {
      const exporterImage = new docker.RemoteImage(`${name}-postgres-exporter-image`, { name: args.images.postgresExporter, keepLocally: true }, { parent: this });
      new docker.Container(
        `${name}-postgres-exporter`,
        {
          name: physical(`${name}-postgres-exporter`),
          image: exporterImage.imageId,
          restart: "unless-stopped",
          networksAdvanced,
          ports: [{ internal: EXPORTER_PORT, ip: PUBLISH_ADDRESS }],
          envs: pulumi.output(primaryHostName).apply((host) => [
            `DATA_SOURCE_URI=${host}:${POSTGRES_PORT}/${DATABASE}?sslmode=verify-full&sslrootcert=${EXPORTER_DIR}/ca.crt`,
            `DATA_SOURCE_USER=${MONITOR_ROLE}`,
            `DATA_SOURCE_PASS_FILE=${EXPORTER_DIR}/password`,
          ]),
          command: [`--extend.query-path=${EXPORTER_DIR}/queries.yaml`],
          uploads: [
            { file: `${EXPORTER_DIR}/queries.yaml`, content: postgresExporterQueries() },
            { file: `${EXPORTER_DIR}/ca.crt`, content: certificates.caCert },
            { file: `${EXPORTER_DIR}/password`, content: args.passwords.monitor, owner: POSTGRES_EXPORTER_IMAGE_UID, permissions: "0600" },
          ],
        },
        { ...replaceable, dependsOn: [primary] },
      );
    }

    // PgBouncer's metrics exporter on the pooler's admin console as nb_monitor, over TLS verify-full
    // against the stack's CA (the pooler's certificate names its container), as the local stack runs
    // it; its password as a file, never in the environment Docker shows; published on 127.0.0.1 on a
    // port Docker picks. The image: the program's build of the shared pins, or the config's reference.
    if (args.passwords.monitor !== undefined) {
      let image: pulumi.Output<string>;
      if (args.images.pgbouncerExporter !== undefined) {
        image = new docker.RemoteImage(`${name}-pgbouncer-exporter-image`, { name: args.images.pgbouncerExporter, keepLocally: true }, { parent: this }).imageId;
      } else {
        const build = pgbouncerExporterImageBuild();
        image = new docker.Image(
          `${name}-pgbouncer-exporter-image`,
          { imageName: `${PGBOUNCER_EXPORTER_LOCAL_REPOSITORY}:${build.tag}`, skipPush: true, build: { context: PGBOUNCER_EXPORTER_IMAGE_CONTEXT, dockerfile: `${PGBOUNCER_EXPORTER_IMAGE_CONTEXT}/Dockerfile`, args: build.args } },
          { parent: this },
        ).repoDigest;
      }
      new docker.Container(
        `${name}-pgbouncer-exporter`,
        {
          name: physical(`${name}-pgbouncer-exporter`),
          image,
          restart: "unless-stopped",
          networksAdvanced,
          ports: [{ internal: PGBOUNCER_EXPORTER_PORT, ip: PUBLISH_ADDRESS }],
          entrypoints: ["/bin/sh", "-c", DOCKER_EXPORTER_START, "pgbouncer-exporter-start"],
          uploads: [
            { file: EXPORTER_CONFIG_FILE, content: containerExporterYaml(containerName("pooler")), owner: PGBOUNCER_EXPORTER_IMAGE_UID, permissions: "0600" },
            { file: EXPORTER_CA_FILE, content: certificates.caCert, owner: PGBOUNCER_EXPORTER_IMAGE_UID, permissions: "0600" },
            {
              file: EXPORTER_PASSWORD_FILE,
              content: pulumi.output(args.passwords.monitor).apply(encodeURIComponent),
              owner: PGBOUNCER_EXPORTER_IMAGE_UID,
              permissions: "0600",
            },
          ],
        },
        { ...replaceable, dependsOn: [pooler] },
      );
    }

    // Backups: pgBackRest on BACKUP_JOBS's schedule (Debian's cron, as root, running each job as
    // postgres), reading the primary's data volume (read-only) and connecting to the primary as
    // nb_backup over TLS; it creates the stanza first (idempotent), so the primary's archiving
    // succeeds from then on. Cron passes jobs no environment of the container: the crontab carries it.
    const backupEnv = pulumi.output(primaryHostName).apply((host) => ({
      PGHOST: host,
      PGPORT: String(POSTGRES_PORT),
      PGSSLMODE: "verify-full",
      PGSSLROOTCERT: CA_FILE,
      PGPASSFILE: BACKUP_PASSFILE,
    }));
    const backup = new docker.Container(
      `${name}-backup`,
      {
        name: physical(`${name}-backup`),
        image: postgresImage.repoDigest,
        restart: "unless-stopped",
        networksAdvanced,
        volumes: [
          // The volume the primary container mounts, whichever role's it is.
          { volumeName: dataVolume(mountedVolume(cfg, "primary")).name, containerPath: DATA_DIR, readOnly: true },
          { volumeName: backupRepo.name, containerPath: BACKUP_REPO_DIR },
        ],
        envs: backupEnv.apply((env) => Object.entries(env).map(([k, v]) => `${k}=${v}`)),
        entrypoints: ["/bin/sh", "-c", `set -eu\ngosu postgres pgbackrest --config=${PGBACKREST_CONF} --stanza=${stanza} stanza-create\nexec cron -f`],
        uploads: [
          { file: PGBACKREST_CONF, content: pgbackrestConf },
          {
            file: BACKUP_PASSFILE,
            content: pulumi.output(args.passwords.backup).apply((password) => `*:*:postgres:${BACKUP_ROLE}:${password}\n`),
            owner: POSTGRES_IMAGE_UID,
            permissions: "0600",
          },
          { file: CA_FILE, content: certificates.caCert },
          // cron reads /etc/cron.d files owned by root and not writable by others.
          {
            file: BACKUP_CRONTAB,
            content: backupEnv.apply((env) => backupCrontab({ configFile: PGBACKREST_CONF, stanza, user: "postgres", env, logFile: `${BACKUP_LOG_DIR}/schedule.log` })),
            permissions: "0644",
          },
        ],
      },
      { ...replaceable, dependsOn: [primary] },
    );

    // The init script ran once, at initdb: the same SQL again, whenever a password changes.
    this.platformRolesSql = pulumi.secret(initSql);

    const endpoint = (c: docker.Container, port: number) => publishedPort(c, port).apply((p) => ({ host: PUBLISH_ADDRESS, port: p }));
    this.primary = primaryPort.apply((port) => ({ host: PUBLISH_ADDRESS, port }));
    this.replicas = pulumi.all(replicas.map((r) => endpoint(r, POSTGRES_PORT)));
    this.pooler = endpoint(pooler, POOLER_PORT).apply((e) => ({ ...e, poolMode: args.pooler.poolMode }));
    this.admin = pulumi.secret(
      pulumi.all([this.primary, args.passwords.admin]).apply(([e, password]) => ({ ...e, username: ADMIN_USER, password, superuser: true })),
    );
    // For nbdb's switchover/failover: each container's name (docker inspect, docker exec) and URN (pulumi up --target).
    const ref = (c: docker.Container) => pulumi.all([c.name, c.urn]).apply(([container, urn]) => ({ container, urn }));
    const volumeNames = pulumi.all(Object.fromEntries([...dataVolumes].map(([role, v]) => [role, v.name])));
    this.docker = pulumi.all([ref(primary), pulumi.all(replicas.map(ref)), ref(pooler), ref(backup), volumeNames]).apply(([p, r, b, k, volumes]) => ({
      primary: p,
      replicas: r,
      pooler: b,
      backup: k,
      volumes,
      dataDir: DATA_DIR,
    }));
    this.registerOutputs({ primary: this.primary, replicas: this.replicas, pooler: this.pooler });
  }

  /**
   * docker.restoreFrom: a container that runs once, before the primary, on its data volume: the
   * source stack's repository volume mounted read-only, pgBackRest's restore to the time (the
   * renderer the local stack's restore uses), promotion, this stack's platform passwords, then it
   * exits. Read only at creation (ignoreChanges): editing the key later changes nothing, and a
   * container made again later finds the restore done (the script's marker) and exits at once.
   */
  private restoreContainer(
    name: string,
    physical: (logical: string) => string,
    from: DockerRestoreFrom,
    c: {
      image: pulumi.Input<string>;
      volume: docker.Volume;
      command: string[];
      memory: number;
      uploads: docker.types.input.ContainerUpload[];
      passwords: PlatformPasswords;
      dependsOn: pulumi.Resource[];
    },
  ): docker.Container {
    const sourceStanza = `${name}${from.sourceSuffix}`;
    const sourceConf = renderPgbackrestConf({
      stanza: sourceStanza,
      repoPath: SOURCE_REPO_DIR,
      logPath: "/var/log/pgbackrest",
      lockPath: "/tmp/pgbackrest",
      spoolPath: "/var/spool/pgbackrest",
      pgPath: DATA_DIR,
      pgPort: POSTGRES_PORT,
    });
    const script = restoreScript({
      configFile: SOURCE_PGBACKREST_CONF,
      stanza: sourceStanza,
      target: from.time,
      socketDir: SOCKET_DIR,
      port: POSTGRES_PORT,
      superuser: ADMIN_USER,
      database: DATABASE,
      finishSqlFile: RESTORE_FINISH_SQL_FILE,
    });
    const finishSql = pulumi
      .all([c.passwords.admin, c.passwords.replication, c.passwords.poolerAuth, c.passwords.backup])
      .apply(([admin, replication, poolerAuth, backup]) => restoreFinishSql({ admin, replication, poolerAuth, backup }));
    return new docker.Container(
      `${name}-restore`,
      {
        name: physical(`${name}-restore`),
        image: c.image,
        // Runs to its end while `pulumi up` waits (attach); its exit code gates the primary (restoreOutcome).
        restart: "no",
        mustRun: false,
        attach: true,
        logs: true,
        memory: c.memory,
        volumes: [
          { volumeName: c.volume.name, containerPath: DATA_DIR },
          // The source stack's own repository volume, which this stack never writes to.
          { volumeName: `${name}-backup-repo${from.sourceSuffix}`, containerPath: SOURCE_REPO_DIR, readOnly: true },
        ],
        entrypoints: ["/bin/sh", "-c", RESTORE_ENTRYPOINT, "restore-entrypoint"],
        command: c.command,
        uploads: [
          ...c.uploads,
          { file: SOURCE_PGBACKREST_CONF, content: sourceConf },
          { file: RESTORE_SCRIPT_FILE, content: script },
          { file: RESTORE_FINISH_SQL_FILE, content: pulumi.secret(finishSql), owner: POSTGRES_IMAGE_UID, permissions: "0600" },
        ],
      },
      { parent: this, dependsOn: [...c.dependsOn, c.volume], ignoreChanges: ["image", "memory", "volumes", "entrypoints", "command", "uploads"] },
    );
  }
}
