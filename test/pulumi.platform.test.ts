// The Pulumi program under the SDK's mocks, for dev (Docker), prod (AWS) and a review stack: which
// resources it registers, how they are named, wired and protected, what it exports, and that every
// invalid config value stops it before any resource is registered.
import { expect } from "chai";
import { ALARM_DEFAULTS } from "../infra/config";
import {
  PGBOUNCER_EXPORTER_DRIVER_VERSION,
  PGBOUNCER_EXPORTER_IMPORT_CHECK,
  PGBOUNCER_EXPORTER_REQUIREMENTS,
  pgbouncerExporterYaml,
  postgresExporterQueries,
} from "../infra/topology/monitoring";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { RDS_CA_FILE } from "../infra/platform/rdsCa";
import { connectionBudget } from "../infra/topology/connectionBudget";
import { majorVersionProvider } from "../infra/dynamic/majorVersion";
import { stableScramVerifier } from "../infra/topology/scram";
import { REWIND_FUNCTIONS, rewindGrantsSql } from "../infra/topology/replicaBootstrap";
import * as pulumi from "@pulumi/pulumi";
import { StackOutputs } from "../infra/outputs";
import { PGBOUNCER_EXPORTER_IMAGE_CONTEXT, pgbouncerExporterImageBuild, postgresImageBuild } from "../infra/platform/images";
import { BACKUP_JOBS, SCHEDULED_JOBS, maintenanceScheduleSql } from "../infra/topology/maintenanceSchedule";
import { BACKUP_ROLE, RESTORE_REFUSED_EXIT, archiveCommand, backupCrontab, renderPgbackrestConf, restoreScript } from "../infra/topology/pgbackrest";
import { DockerCluster, restoreOutcome } from "../infra/platform/docker";
import { restoreFinishSql } from "../infra/platform/dockerPrimaryInit";
import { restoredSchemaSql } from "../infra/database/layer";
import { AwsCluster } from "../infra/platform/aws";
import { pulumiCaFile } from "../infra/stack";
import { Config, DEV, PROD, Registration, Run, deploy, deployed, installMocks, named, of, registrationsDone, stackConfigFile, value, withKey } from "./pulumiMocks";

const IMAGES = { postgres: "postgres:15.17-bookworm", pgbouncer: "edoburu/pgbouncer:v1.25.2-p0", postgresExporter: "prometheuscommunity/postgres-exporter:v0.11.1" };
const DIGEST = `sha256:${"ab".repeat(32)}`;

/** Go's time.Duration.String() of whole seconds, which the Docker provider stores and compares: 120 → "2m0s". */
function goDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
}

/** "2m0s", "120s", "1h" → seconds. */
function durationSeconds(d: string): number {
  const units: Record<string, number> = { h: 3600, m: 60, s: 1 };
  const parts = [...d.matchAll(/(\d+)([hms])/g)];
  if (parts.map((p) => p[0]).join("") !== d) throw new Error(`not a duration: ${d}`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0);
}

const uploaded = (r: Registration, file: string): string => r.inputs.uploads.find((u: any) => u.file === file).content;

const CONTAINER = "docker:index/container:Container";
const VOLUME = "docker:index/volume:Volume";
const NETWORK = "docker:index/network:Network";
const IMAGE = "docker:index/remoteImage:RemoteImage";
const BUILT_IMAGE = "docker:index/image:Image";
const RDS = "aws:rds/instance:Instance";
/** A restored stack's data key: the source's, given in its config. */
const SOURCE_KEY = "source-data-key-0123456789abcdef0123456789abcdef";
const ECS_SERVICE = "aws:ecs/service:Service";
const TASK = "aws:ecs/taskDefinition:TaskDefinition";

/** Physical names: what Docker and AWS see (roles and schemas are named by the model, inside each stack's own server). */
function physicalNames(run: Run): string[] {
  return run.registrations
    .filter((r) => r.type.startsWith("docker:") || r.type.startsWith("aws:"))
    .flatMap((r) => [r.inputs.name, r.inputs.identifier, r.inputs.family].filter((n): n is string => typeof n === "string"))
    .filter((_, i, all) => all.indexOf(_) === i);
}

describe("Pulumi program (mocks)", function () {
  this.timeout(30_000);

  after(() => pulumi.runtime.setAllConfig({}));

  describe("local: the machine's own processes (Pulumi.local.yaml)", () => {
    const LOCAL_TOPOLOGY = "pulumi-nodejs:dynamic/neuralblitz:LocalTopology";
    let run: Run & { outputs: StackOutputs };
    before(async () => {
      run = await deployed("local", stackConfigFile("local"));
    });

    it("runs the servers as one LocalTopology over the local stack pulumi-local, no container, no cloud resource", () => {
      const [topology] = of(run, LOCAL_TOPOLOGY);
      expect(topology.inputs).to.include({ stack: "pulumi-local", replicas: 2, keepData: false });
      expect(topology.additionalSecretOutputs).to.have.members(["adminPassword", "passwords", "dataKey"]);
      expect(run.registrations.filter((r) => r.type.startsWith("docker:") || r.type.startsWith("aws:"))).to.deep.equal([]);
    });

    it("puts the same database layer on it, with the local stack's own logins (its bootstrap made every role)", async () => {
      expect(of(run, "postgresql:index/role:Role")).to.deep.equal([]);
      expect(of(run, "pulumi-nodejs:dynamic/neuralblitz:SqlBundle").length).to.be.greaterThan(10);
      expect(of(run, "postgresql:index/grant:Grant").length).to.be.greaterThan(10);
      const connections = await value(run.outputs.connections);
      expect(connections.app).to.match(/^postgresql:\/\/nb_app:local-nb_app-pw@127\.0\.0\.1:26432\/neuralblitz\?sslmode=verify-full&sslrootcert=/);
      expect(connections.migrator).to.include("nb_migrator:local-nb_migrator-pw@127.0.0.1:25432");
      expect(await value(run.outputs.dataKey)).to.equal("local-data-key-0123456789abcdef0123456789abcdef");
      expect(await pulumi.isSecret(run.outputs.dataKey)).to.equal(true);
    });

    it("refuses partition overrides, which the local stack's next nbdb up would undo, naming the key", async () => {
      const bad = await deploy("local", { ...stackConfigFile("local"), partitions: { metrics: { retentionDays: 30 } } });
      expect(String(bad.error)).to.include("neuralblitz-db:partitions = {\"metrics\":{\"retentionDays\":30}}: the local platform keeps").and.include("pulumi config rm partitions");
      expect(bad.registrations).to.deep.equal([]);
    });

    it("refuses a bad local.home before any resource, naming the key", async () => {
      const bad = await deploy("local", { ...stackConfigFile("local"), local: { home: "relative/dir" } });
      expect(String(bad.error)).to.include("neuralblitz-db:local.home");
    });
  });

  describe("dev: Docker", () => {
    let run: Run & { outputs: StackOutputs };
    before(async () => {
      run = await deployed("dev", DEV);
    });

    it("registers a primary, one replica per config, a pooler, a backup container and the two metrics exporters, with their volumes, network and images", () => {
      expect(of(run, CONTAINER).map((r) => r.name)).to.have.members(["nbdb-primary", "nbdb-replica-0", "nbdb-pooler", "nbdb-backup", "nbdb-postgres-exporter", "nbdb-pgbouncer-exporter"]);
      expect(of(run, VOLUME).map((r) => r.name)).to.have.members(["nbdb-primary-data", "nbdb-replica-0-data", "nbdb-backup-repo"]);
      expect(of(run, NETWORK)).to.have.length(1);
      expect(of(run, IMAGE).map((r) => r.inputs.name)).to.have.members(["edoburu/pgbouncer:v1.24.1-p1", "prometheuscommunity/postgres-exporter:v0.11.1"]);
      expect(of(run, IMAGE).every((r) => r.inputs.keepLocally === true)).to.equal(true);
      expect(run.registrations.filter((r) => r.type.startsWith("aws:"))).to.deep.equal([]);
      expect(of(run, "neuralblitz:platform:DockerCluster")).to.have.length(1);
    });

    it("builds the servers' image from the pinned postgres image plus Debian's postgresql-<major>-cron and pgbackrest, never pushed", () => {
      const image = named(run, BUILT_IMAGE, "nbdb-postgres-image");
      expect(image.inputs.skipPush).to.equal(true);
      expect(image.inputs.build.args).to.deep.equal({ BASE_IMAGE: "postgres:15.17-bookworm", PACKAGES: "postgresql-15-cron pgbackrest cron" });
      expect(image.inputs.imageName).to.match(/^neuralblitz-postgres:15\.17-bookworm-[0-9a-f]{12}$/);
      // The Dockerfile the build runs installs exactly those packages on that base.
      const dockerfile = fs.readFileSync(image.inputs.build.dockerfile, "utf8");
      expect(path.dirname(image.inputs.build.dockerfile)).to.equal(image.inputs.build.context);
      expect(dockerfile).to.match(/^FROM \$\{BASE_IMAGE\}$/m).and.match(/apt-get install -y --no-install-recommends \$\{PACKAGES\}/);
      // Another pinned build of the base is another image, never a stale one of the same name.
      const other = postgresImageBuild(`postgres:15.17-bookworm@${DIGEST}`, "15");
      expect(other.imageName).to.not.equal(image.inputs.imageName);
      expect(postgresImageBuild("postgres:17.9-bookworm", "17").args.PACKAGES).to.equal("postgresql-17-cron pgbackrest cron");
    });

    it("runs PostgreSQL's exporter with the project's queries as nb_monitor over verified TLS, its password in a file", () => {
      const c = named(run, CONTAINER, "nbdb-postgres-exporter");
      expect(c.inputs.envs).to.have.members([
        "DATA_SOURCE_URI=nbdb-primary:5432/neuralblitz?sslmode=verify-full&sslrootcert=/etc/postgres-exporter/ca.crt",
        "DATA_SOURCE_USER=nb_monitor",
        "DATA_SOURCE_PASS_FILE=/etc/postgres-exporter/password",
      ]);
      expect(c.inputs.envs.join(" ")).to.not.include("pw-nbdb-nb_monitor");
      expect(uploaded(c, "/etc/postgres-exporter/queries.yaml")).to.equal(postgresExporterQueries());
      expect(c.inputs.uploads.find((u: any) => u.file === "/etc/postgres-exporter/password")).to.include({ content: "pw-nbdb-nb_monitor", permissions: "0600", owner: "65534" });
      expect(c.inputs.ports).to.deep.equal([{ internal: 9187, ip: "127.0.0.1" }]);
    });

    it("preloads pg_cron on every server, so the database layer schedules the one job list as nb_migrator (no scheduler container)", () => {
      for (const name of ["nbdb-primary", "nbdb-replica-0"]) {
        const command: string[] = named(run, CONTAINER, name).inputs.command;
        expect(command).to.include.members(["shared_preload_libraries=pg_stat_statements,pg_cron", "cron.database_name=neuralblitz", "cron.use_background_workers=on"]);
      }
      const [schedule] = of(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql").filter((r) => r.name === "nbdb-schedule");
      expect(schedule, "the schedule AdminSql").to.not.equal(undefined);
      expect(schedule.inputs.runAs).to.equal("nb_migrator");
      expect(schedule.inputs.sql).to.equal(maintenanceScheduleSql());
      for (const job of SCHEDULED_JOBS) expect(schedule.inputs.sql).to.include(`'${job.name}', '${job.schedule}', $job$${job.command}$job$`);
      const [adminSetup] = of(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql").filter((r) => r.name === "nbdb-admin-setup");
      expect(adminSetup.inputs.sql).to.include("CREATE EXTENSION IF NOT EXISTS pg_cron");
    });

    it("archives the primary's WAL with pgBackRest into the repository volume; the replicas are set up alike, so one promoted archives its new timeline at once", () => {
      const primary = named(run, CONTAINER, "nbdb-primary");
      const conf = uploaded(primary, "/etc/postgresql/neuralblitz/pgbackrest.conf");
      expect(conf).to.equal(
        renderPgbackrestConf({ stanza: "nbdb", repoPath: "/var/lib/pgbackrest", logPath: "/var/log/pgbackrest", lockPath: "/tmp/pgbackrest", spoolPath: "/var/spool/pgbackrest", pgPath: "/var/lib/postgresql/data", pgPort: 5432 }),
      );
      expect(primary.inputs.command).to.include.members(["archive_mode=on", `archive_command=${archiveCommand("/etc/postgresql/neuralblitz/pgbackrest.conf", "nbdb", "/var/lib/postgresql/data")}`]);
      expect(primary.inputs.volumes).to.deep.include({ volumeName: "nbdb-backup-repo", containerPath: "/var/lib/pgbackrest" });
      // A standby does not archive with archive_mode=on; promoted by a switchover or failover it pushes the
      // new timeline's history file and the old timeline's partial last segment, which the backups need.
      const replica = named(run, CONTAINER, "nbdb-replica-0");
      const archiving = (c: Registration) => c.inputs.command.filter((a: string) => a.startsWith("archive_"));
      expect(archiving(replica)).to.deep.equal(archiving(primary)).and.to.have.length(2);
      expect(replica.inputs.volumes).to.deep.include({ volumeName: "nbdb-backup-repo", containerPath: "/var/lib/pgbackrest" });
      expect(uploaded(replica, "/etc/postgresql/neuralblitz/pgbackrest.conf")).to.equal(conf);
      // pgBackRest's role, with the backup functions only, at initdb and whenever its password changes.
      const init = uploaded(primary, "/docker-entrypoint-initdb.d/10-neuralblitz-platform-roles.sql");
      expect(init).to.include(`ALTER ROLE ${BACKUP_ROLE} WITH LOGIN NOSUPERUSER`).and.include("pg_backup_start").and.not.include("pw-nbdb-nb_backup");
    });

    it("takes backups on BACKUP_JOBS's schedule from a backup container: the primary's data read-only, as nb_backup over verify-full", () => {
      const c = named(run, CONTAINER, "nbdb-backup");
      expect(c.inputs.image).to.equal(named(run, CONTAINER, "nbdb-primary").inputs.image);
      expect(c.inputs.volumes).to.deep.equal([
        { volumeName: "nbdb-primary-data", containerPath: "/var/lib/postgresql/data", readOnly: true },
        { volumeName: "nbdb-backup-repo", containerPath: "/var/lib/pgbackrest" },
      ]);
      expect(c.inputs.entrypoints[2]).to.equal("set -eu\ngosu postgres pgbackrest --config=/etc/postgresql/neuralblitz/pgbackrest.conf --stanza=nbdb stanza-create\nexec cron -f");
      const env = { PGHOST: "nbdb-primary", PGPORT: "5432", PGSSLMODE: "verify-full", PGSSLROOTCERT: "/etc/postgresql/neuralblitz/ca.crt", PGPASSFILE: "/etc/postgresql/neuralblitz/backup.pgpass" };
      expect(c.inputs.envs).to.deep.equal(Object.entries(env).map(([k, v]) => `${k}=${v}`));
      const crontab = uploaded(c, "/etc/cron.d/neuralblitz-backup");
      expect(crontab).to.equal(backupCrontab({ configFile: "/etc/postgresql/neuralblitz/pgbackrest.conf", stanza: "nbdb", user: "postgres", env, logFile: "/var/log/pgbackrest/schedule.log" }));
      for (const job of BACKUP_JOBS) expect(crontab).to.include(`${job.schedule} postgres pgbackrest --config='/etc/postgresql/neuralblitz/pgbackrest.conf' --stanza=nbdb --type=${job.type} backup`);
      expect(crontab).to.include("PGHOST=nbdb-primary\n");
      expect(c.inputs.uploads.find((u: any) => u.file === "/etc/cron.d/neuralblitz-backup").permissions).to.equal("0644");
      expect(uploaded(c, "/etc/postgresql/neuralblitz/backup.pgpass")).to.equal(`*:*:postgres:${BACKUP_ROLE}:pw-nbdb-nb_backup\n`);
      expect(c.secretInputs).to.include("uploads");
      expect(c.dependencies).to.include(named(run, CONTAINER, "nbdb-primary").urn);
    });

    it("runs every server from the built image's id, healthchecked on 127.0.0.1, and waits for it", () => {
      for (const name of ["nbdb-primary", "nbdb-replica-0"]) {
        const c = named(run, CONTAINER, name);
        expect(c.inputs.image).to.match(/^sha256:built-neuralblitz-postgres:15\.17-bookworm-[0-9a-f]{12}$/);
        expect(c.inputs.healthcheck.tests).to.include.members(["pg_isready", "-h", "127.0.0.1"]);
        expect(c.inputs.wait).to.equal(true);
        expect(c.inputs.volumes[0].volumeName).to.equal(`${name}-data`);
        expect(c.inputs.command).to.include("hba_file=/etc/postgresql/neuralblitz/pg_hba.conf");
      }
    });

    it("sizes every server's max_connections from the pooler (one container), never below 100", () => {
      for (const name of ["nbdb-primary", "nbdb-replica-0"]) expect(named(run, CONTAINER, name).inputs.command).to.include("max_connections=100");
      expect(uploaded(named(run, CONTAINER, "nbdb-pooler"), "/etc/pgbouncer/pgbouncer.ini")).to.include("max_db_connections = 50");
      expect(connectionBudget({ processes: 1, pooledLogins: 2, defaultPoolSize: 50 }).maxConnections).to.equal(154);
    });

    it("writes healthcheck durations as the provider reads them back, so previews show no update (issue 15 item 5)", () => {
      const checked = of(run, CONTAINER).filter((c) => c.inputs.healthcheck);
      expect(checked.map((c) => c.name)).to.include.members(["nbdb-primary", "nbdb-replica-0", "nbdb-pooler"]);
      for (const c of checked) {
        for (const field of ["interval", "timeout", "startPeriod"]) {
          const written: string = c.inputs.healthcheck[field];
          expect(written, `${c.name} healthcheck.${field}`).to.equal(goDuration(durationSeconds(written)));
        }
      }
      expect(goDuration(120)).to.equal("2m0s");
    });

    it("creates the replication and pooler roles and the auth lookup at initdb, with SCRAM verifiers only", () => {
      const primary = named(run, CONTAINER, "nbdb-primary");
      const init = uploaded(primary, "/docker-entrypoint-initdb.d/10-neuralblitz-platform-roles.sql");
      expect(init).to.match(/ALTER ROLE nb_replicator WITH LOGIN REPLICATION .* PASSWORD 'SCRAM-SHA-256\$4096:/);
      expect(init).to.match(/ALTER ROLE nb_pgbouncer WITH LOGIN NOREPLICATION .* PASSWORD 'SCRAM-SHA-256\$4096:/);
      expect(init).to.include("CREATE OR REPLACE FUNCTION pgbouncer.get_auth");
      expect(init).not.to.include("pw-nbdb-nb_replicator");
      expect(primary.inputs.envs).to.include("POSTGRES_PASSWORD_FILE=/etc/postgresql/neuralblitz/admin-password");
      expect(primary.inputs.envs.join(" ")).not.to.include("pw-");
      expect(primary.secretInputs).to.include("uploads");
    });

    it("gives each replica a ReplicationSlot it depends on, so removing the replica drops its slot (issue 15 item 7)", () => {
      const slot = named(run, "pulumi-nodejs:dynamic/neuralblitz:ReplicationSlot", "nbdb-replica-0-slot");
      expect(slot.inputs.slotName).to.equal("replica_0");
      expect(slot.secretInputs).to.include("connection");
      expect(slot.inputs.connection).to.equal(`postgresql://postgres:pw-nbdb-admin@127.0.0.1:15432/neuralblitz?sslmode=verify-full&sslrootcert=${pulumiCaFile("dev")}`);
      expect(named(run, CONTAINER, "nbdb-replica-0").dependencies).to.include(slot.urn);
      // Beside the standby, a watch stops it when the primary has lost its slot; the restart takes it again.
      const replica = named(run, CONTAINER, "nbdb-replica-0");
      expect(uploaded(replica, "/etc/postgresql/neuralblitz/replica-slot-watch.sh")).to.include("READ_REPLICATION_SLOT replica_0").and.include("kill -INT 1");
      expect(replica.inputs.entrypoints[2]).to.include("replica-slot-watch.sh) &");
    });

    it("bootstraps each replica from the primary with the shared script", () => {
      const primary = named(run, CONTAINER, "nbdb-primary");
      const replica = named(run, CONTAINER, "nbdb-replica-0");
      expect(replica.dependencies).to.include(primary.urn);
      const script = uploaded(replica, "/etc/postgresql/neuralblitz/replica-bootstrap.sh");
      expect(script).to.include("host=nbdb-primary port=5432 user=nb_replicator");
      expect(script).to.include("--slot=replica_0");
      // The identifiers are compared before anything is discarded (a new, empty primary never replaces the replica's data).
      expect(script).to.include("-c 'IDENTIFY_SYSTEM'").and.include("pg_controldata");
      expect(script.indexOf("IDENTIFY_SYSTEM")).to.be.below(script.indexOf("-mindepth 1 -delete"));
      expect(replica.inputs.entrypoints.join(" ")).to.include('exec docker-entrypoint.sh "$@"');
    });

    it("configures PgBouncer from the shared pgbouncer.ini with auth_query, pointed at the primary", () => {
      const pooler = named(run, CONTAINER, "nbdb-pooler");
      expect(pooler.inputs.image).to.equal("sha256:edoburu/pgbouncer:v1.24.1-p1");
      const ini = uploaded(pooler, "/etc/pgbouncer/pgbouncer.ini");
      expect(ini).to.include("neuralblitz = host=nbdb-primary port=5432 dbname=neuralblitz");
      // Reads over the replica containers by name (their certificates name them), TLS verify-full like the primary's hop.
      expect(ini).to.match(/^neuralblitz_readonly = host=nbdb-replica-0 port=5432 load_balance_hosts=round-robin dbname=neuralblitz auth_user=nb_pgbouncer$/m);
      expect(ini).to.include("server_tls_sslmode = verify-full");
      expect(ini).to.include("auth_query = SELECT username, password FROM pgbouncer.get_auth($1)");
      expect(ini).to.include("pool_mode = transaction");
      expect(ini).to.include("max_client_conn = 1000");
      expect(ini).to.include("default_pool_size = 20");
      // nb_monitor's verifier (never its password) for the PgBouncer exporter's console login, as the local stack's.
      expect(uploaded(pooler, "/etc/pgbouncer/userlist.txt")).to.equal(`"nb_pgbouncer" "pw-nbdb-nb_pgbouncer"\n"nb_monitor" "${stableScramVerifier("nb_monitor", "pw-nbdb-nb_monitor")}"\n`);
      expect(ini).to.match(/^stats_users = nb_pgbouncer, nb_monitor$/m);
    });

    it("builds PgBouncer's exporter image from the pinned Python 3.11 base with exactly the shared pins, none resolved (--no-deps), never pushed", () => {
      const image = named(run, BUILT_IMAGE, "nbdb-pgbouncer-exporter-image");
      expect(image.inputs.skipPush).to.equal(true);
      expect(image.inputs.build.args).to.deep.equal({
        BASE_IMAGE: "python:3.11-slim-bookworm",
        REQUIREMENTS: PGBOUNCER_EXPORTER_REQUIREMENTS.join(" "),
        DRIVER: `psycopg2-binary==${PGBOUNCER_EXPORTER_DRIVER_VERSION}`,
        IMPORT_CHECK: PGBOUNCER_EXPORTER_IMPORT_CHECK,
      });
      expect(image.inputs.build.args.REQUIREMENTS).to.equal("prometheus-pgbouncer-exporter==2.1.2 prometheus-client==0.8.0 python-json-logger==0.1.11 PyYAML==6.0.2");
      expect(image.inputs.imageName).to.match(/^neuralblitz-pgbouncer-exporter:2\.1\.2-[0-9a-f]{12}$/);
      // The Dockerfile installs exactly those, without resolving, on that base, and runs as nobody.
      const dockerfile = fs.readFileSync(image.inputs.build.dockerfile, "utf8");
      expect(path.dirname(image.inputs.build.dockerfile)).to.equal(image.inputs.build.context);
      expect(dockerfile).to.match(/^FROM \$\{BASE_IMAGE\}$/m).and.match(/pip install --no-deps .*\$\{DRIVER\} \$\{REQUIREMENTS\}/).and.match(/^USER 65534:65534$/m);
      expect(dockerfile).to.include('python -c "${IMPORT_CHECK}"');
      expect(named(run, CONTAINER, "nbdb-pgbouncer-exporter").inputs.image).to.equal(`sha256:built-${image.inputs.imageName}`);
    });

    it("runs PgBouncer's exporter on the pooler container's console as nb_monitor over verify-full with the stack's CA, its password in a file", () => {
      const c = named(run, CONTAINER, "nbdb-pgbouncer-exporter");
      const config = uploaded(c, "/etc/pgbouncer-exporter/config.yaml");
      expect(config).to.equal(
        pgbouncerExporterYaml({ listenHost: "0.0.0.0", listenPort: 9127, pooler: { host: "nbdb-pooler", port: 6432 }, caFile: "/etc/pgbouncer-exporter/pooler-ca.crt" }),
      );
      expect(config).to.include("  - dsn: postgresql://nb_monitor:$(NBDB_MONITOR_PASSWORD)@nbdb-pooler:6432/pgbouncer?sslmode=verify-full&sslrootcert=/etc/pgbouncer-exporter/pooler-ca.crt\n");
      expect(uploaded(c, "/etc/pgbouncer-exporter/pooler-ca.crt")).to.equal("mock CA certificate of nbdb");
      expect(c.inputs.uploads.find((u: any) => u.file === "/etc/pgbouncer-exporter/password")).to.include({ content: "pw-nbdb-nb_monitor", permissions: "0600", owner: "65534" });
      expect(c.secretInputs).to.include("uploads");
      // The password reaches the variable the config names from the file at start: not in the environment or the command.
      expect(c.inputs.entrypoints.join("\n")).to.include('NBDB_MONITOR_PASSWORD="$(cat /etc/pgbouncer-exporter/password)"').and.include("exec pgbouncer-exporter --config=/etc/pgbouncer-exporter/config.yaml");
      expect(JSON.stringify([c.inputs.envs ?? [], c.inputs.entrypoints, c.inputs.command ?? []])).to.not.include("pw-nbdb-nb_monitor");
      expect(c.inputs.networksAdvanced).to.deep.equal(named(run, CONTAINER, "nbdb-pooler").inputs.networksAdvanced);
      expect(c.inputs.ports).to.deep.equal([{ internal: 9127, ip: "127.0.0.1" }]);
      expect(c.inputs.restart).to.equal("unless-stopped");
      expect(c.dependencies).to.include(named(run, CONTAINER, "nbdb-pooler").urn);
    });

    it("publishes the configured ports on 127.0.0.1 and exports them in the outputs.json shape", async () => {
      const published = (name: string) => named(run, CONTAINER, name).inputs.ports[0];
      expect(published("nbdb-primary")).to.include({ internal: 5432, external: 15432, ip: "127.0.0.1" });
      expect(published("nbdb-replica-0")).to.include({ external: 15442 });
      expect(published("nbdb-pooler")).to.include({ internal: 6432, external: 16432 });
      const o = run.outputs;
      expect(o.stack).to.equal("dev");
      expect(o.database).to.equal("neuralblitz");
      expect(await value(o.primary)).to.deep.equal({ host: "127.0.0.1", port: 15432 });
      expect(await value(o.replicas)).to.deep.equal([{ host: "127.0.0.1", port: 15442 }]);
      expect(await value(o.pooler)).to.deep.equal({ host: "127.0.0.1", port: 16432, poolMode: "transaction" });
      const connections = await value(o.connections);
      expect(Object.keys(connections)).to.have.members(["app", "readonly", "auditor", "migrator"]);
      const tls = `sslmode=verify-full&sslrootcert=${pulumiCaFile("dev")}`;
      expect(connections.app).to.equal(`postgresql://nb_app:pw-nbdb-nb_app@127.0.0.1:16432/neuralblitz?${tls}`);
      expect(connections.readonly).to.equal(`postgresql://nb_readonly:pw-nbdb-nb_readonly@127.0.0.1:16432/neuralblitz_readonly?${tls}`);
      expect(connections.migrator).to.equal(`postgresql://nb_migrator:pw-nbdb-nb_migrator@127.0.0.1:15432/neuralblitz?${tls}`);
    });

    it("exports credentials only as secrets, the data key included", async () => {
      expect(await pulumi.isSecret(run.outputs.connections)).to.equal(true);
      expect(await pulumi.isSecret(run.outputs.dataKey)).to.equal(true);
      expect(await value(run.outputs.dataKey)).to.equal("pw-nbdb-data-key");
      for (const plain of [run.outputs.primary, run.outputs.replicas, run.outputs.pooler]) {
        expect(await pulumi.isSecret<unknown>(plain)).to.equal(false);
        expect(JSON.stringify(await value<unknown>(plain))).not.to.include("pw-");
      }
    });

    describe("TLS on every hop", () => {
      const TLS = "pulumi-nodejs:dynamic/neuralblitz:TlsCertificates";
      const CONF = "/etc/postgresql/neuralblitz";
      const upload = (r: Registration, file: string) => {
        const i = r.inputs.uploads.findIndex((u: any) => u.file === file);
        expect(i, `${r.name} uploads ${file}`).to.be.at.least(0);
        // Pulumi marks the whole input secret when any part of it is.
        return { ...r.inputs.uploads[i], secret: r.secretPaths.some((p) => `uploads.${i}.content`.startsWith(p)) };
      };

      it("issues one CA and a certificate per server with the program, naming its container and the loopback, keys secret", () => {
        const certs = of(run, TLS);
        expect(certs.map((c) => c.name)).to.deep.equal(["nbdb-tls"]);
        const [c] = certs;
        expect(c.inputs.caFile).to.equal(pulumiCaFile("dev"));
        expect(c.inputs.servers).to.deep.equal(
          ["nbdb-primary", "nbdb-replica-0", "nbdb-pooler"].map((n) => ({ name: n, dnsNames: [n, "localhost"], ipAddresses: ["127.0.0.1"] })),
        );
        expect(c.additionalSecretOutputs).to.have.members(["caKey", "serverKeys"]);
      });

      it("turns TLS on in every server through the shared settings and admits TCP only over it (hostssl)", () => {
        for (const name of ["nbdb-primary", "nbdb-replica-0"]) {
          const server = named(run, CONTAINER, name);
          const command = server.inputs.command.join(" ");
          expect(command).to.include(`ssl=on -c ssl_cert_file=${CONF}/server.crt -c ssl_key_file=${CONF}/server.key`);
          expect(upload(server, `${CONF}/server.crt`)).to.include({ content: `mock certificate of ${name}` });
          expect(upload(server, `${CONF}/server.key`)).to.include({ content: `mock key of ${name}`, owner: "999", permissions: "0600", secret: true });
          const hba = upload(server, `${CONF}/pg_hba.conf`).content as string;
          const tcp = hba.split("\n").filter((l) => /^host/.test(l));
          expect(tcp.length).to.be.greaterThan(0);
          for (const line of tcp) expect(line).to.match(/^hostssl /);
        }
      });

      it("streams replicas with sslmode=verify-full against the stack's CA", () => {
        const replica = named(run, CONTAINER, "nbdb-replica-0");
        expect(upload(replica, `${CONF}/ca.crt`).content).to.equal("mock CA certificate of nbdb");
        expect(upload(replica, `${CONF}/replica-bootstrap.sh`).content).to.include(`host=nbdb-primary port=5432 user=nb_replicator sslmode=verify-full sslrootcert=${CONF}/ca.crt`);
      });

      it("runs PgBouncer with client TLS required and verify-full to the primary", () => {
        const pooler = named(run, CONTAINER, "nbdb-pooler");
        const ini = upload(pooler, "/etc/pgbouncer/pgbouncer.ini").content as string;
        for (const line of [
          "; TLS",
          "client_tls_sslmode = require",
          "client_tls_cert_file = /etc/pgbouncer/pooler.crt",
          "client_tls_key_file = /etc/pgbouncer/pooler.key",
          "server_tls_sslmode = verify-full",
          "server_tls_ca_file = /etc/pgbouncer/server-ca.pem",
        ]) {
          expect(ini.split("\n")).to.include(line);
        }
        expect(upload(pooler, "/etc/pgbouncer/pooler.key")).to.include({ content: "mock key of nbdb-pooler", owner: "70", permissions: "0600", secret: true });
        expect(upload(pooler, "/etc/pgbouncer/server-ca.pem").content).to.equal("mock CA certificate of nbdb");
      });

      it("has the backup container verify the primary too (verify-full, the stack's CA)", () => {
        const backup = named(run, CONTAINER, "nbdb-backup");
        expect(backup.inputs.envs).to.include.members(["PGSSLMODE=verify-full", `PGSSLROOTCERT=${CONF}/ca.crt`]);
        expect(upload(backup, `${CONF}/ca.crt`).content).to.equal("mock CA certificate of nbdb");
      });

      it("exports only verify-full URLs naming the CA file, never sslmode=disable, and the CA itself", async () => {
        const connections = await value(run.outputs.connections);
        for (const [role, url] of Object.entries(connections)) {
          expect(new URL(url).searchParams.get("sslmode"), role).to.equal("verify-full");
          expect(new URL(url).searchParams.get("sslrootcert"), role).to.equal(pulumiCaFile("dev"));
        }
        const all = JSON.stringify(await value<unknown>(pulumi.all([run.outputs.connections, run.outputs.tls, run.outputs.pooler, run.outputs.primary])));
        expect(all).not.to.include("sslmode=disable");
        expect(await value(run.outputs.tls)).to.deep.equal({
          serverCaFile: pulumiCaFile("dev"),
          serverCa: "mock CA certificate of nbdb",
          poolerCaFile: pulumiCaFile("dev"),
          poolerCa: "mock CA certificate of nbdb",
        });
      });
    });

    it("pulls images by digest where the config pins them, the tag kept beside it (issue 15 item 10)", async () => {
      const images = {
        postgres: `postgres:15.17-bookworm@${DIGEST}`,
        pgbouncer: `edoburu/pgbouncer:v1.25.2-p0@${DIGEST}`,
        postgresExporter: `prometheuscommunity/postgres-exporter:v0.11.1@${DIGEST}`,
        pgbouncerExporter: `registry.example/neuralblitz-pgbouncer-exporter:2.1.2@${DIGEST}`,
      };
      const pinned = await deployed("dev", withKey(DEV, "images", images));
      expect(of(pinned, IMAGE).map((r) => r.inputs.name)).to.have.members([images.pgbouncer, images.postgresExporter, images.pgbouncerExporter]);
      // A pinned PgBouncer exporter is pulled, not built.
      expect(named(pinned, CONTAINER, "nbdb-pgbouncer-exporter").inputs.image).to.equal(`sha256:${images.pgbouncerExporter}`);
      expect(of(pinned, BUILT_IMAGE).map((r) => r.inputs.build.args.BASE_IMAGE)).to.deep.equal([images.postgres]);
      const prod = await deployed("prod", PROD);
      const [container] = JSON.parse(of(prod, TASK)[0].inputs.containerDefinitions);
      expect(container.image).to.equal(PROD.images.pgbouncer).and.match(/^edoburu\/pgbouncer:v1\.25\.2-p0@sha256:[0-9a-f]{64}$/);
    });

    it("protects nothing (dev sets no deletionProtection)", () => {
      expect(run.registrations.filter((r) => r.protect).map((r) => r.name)).to.deep.equal([]);
    });
  });

  describe("prod: AWS", () => {
    let run: Run & { outputs: StackOutputs };
    before(async () => {
      run = await deployed("prod", PROD);
    });

    it("registers an RDS primary, a replica per config and one PgBouncer service, and no Docker resource but the exporter's image", () => {
      expect(of(run, RDS).map((r) => r.name)).to.have.members(["nbdb-primary", "nbdb-replica-0", "nbdb-replica-1"]);
      expect(of(run, ECS_SERVICE)).to.have.length(1);
      expect(of(run, ECS_SERVICE)[0].inputs).to.include({ launchType: "FARGATE", desiredCount: 2 });
      expect(of(run, "aws:lb/loadBalancer:LoadBalancer")[0].inputs).to.include({ internal: true, loadBalancerType: "network" });
      expect(run.registrations.filter((r) => r.type.startsWith("docker:")).map((r) => `${r.type} ${r.name}`)).to.deep.equal([`${BUILT_IMAGE} nbdb-pooler-pgbouncer-exporter-image`]);
      expect(named(run, "pulumi:providers:aws", "nbdb-aws").inputs.region).to.equal("eu-west-1");
    });

    it("gives the primary encrypted storage, backups, Performance Insights, a password and a final snapshot", () => {
      const p = named(run, RDS, "nbdb-primary").inputs;
      expect(p).to.include({
        identifier: "nbdb-primary",
        engine: "postgres",
        engineVersion: "15",
        instanceClass: "db.r6g.xlarge",
        allocatedStorage: 200,
        maxAllocatedStorage: 1000,
        storageEncrypted: true,
        backupRetentionPeriod: 14,
        performanceInsightsEnabled: true,
        // Changes land now, not in the maintenance window (where they would show as drift until then).
        applyImmediately: true,
        deletionProtection: true,
        skipFinalSnapshot: false,
        finalSnapshotIdentifier: "nbdb-primary-final-0a1b2c3d",
        publiclyAccessible: false,
        username: "postgres",
        password: "pw-nbdb-admin",
        dbName: "neuralblitz",
      });
      expect(named(run, RDS, "nbdb-primary").secretInputs).to.include("password");
      expect(named(run, "aws:secretsmanager/secretVersion:SecretVersion", "nbdb-pooler-auth-file").secretInputs).to.include("secretString");
    });

    it("makes every replica a replica of the primary, without credentials or a final snapshot", () => {
      const primary = named(run, RDS, "nbdb-primary");
      for (const i of [0, 1]) {
        const r = named(run, RDS, `nbdb-replica-${i}`);
        expect(r.inputs.replicateSourceDb).to.equal(primary.inputs.identifier);
        expect(r.dependencies).to.include(primary.urn);
        expect(r.inputs).not.to.have.any.keys("username", "password", "dbName", "engine");
        expect(r.inputs.skipFinalSnapshot).to.equal(true);
        expect(r.inputs.applyImmediately).to.equal(true);
      }
    });

    it("leaves failover to RDS Multi-AZ: the primary is Multi-AZ, pins no availability zone, and the pooler names its DNS address (docs/switchover.md)", () => {
      const p = named(run, RDS, "nbdb-primary").inputs;
      expect(p.multiAz).to.equal(true);
      // A pinned zone would show as a change after every Multi-AZ failover.
      expect(p).not.to.have.any.keys("availabilityZone");
      // PgBouncer reaches the primary by the endpoint's name, which RDS points at the new primary.
      const [container] = JSON.parse(of(run, TASK)[0].inputs.containerDefinitions);
      const ini: string = container.environment.find((e: { name: string }) => e.name === "PGBOUNCER_INI").value;
      expect(ini).to.match(/^neuralblitz = host=nbdb-primary\.[a-z0-9.-]+\.rds\.amazonaws\.com /m);
      // Names are resolved again after PgBouncer's default DNS cache time (dns_max_ttl, 15 s), which the program keeps.
      expect(ini).not.to.match(/^dns_/m);
    });

    it("preloads pg_cron and pg_stat_statements at the next reboot and forces TLS", () => {
      const params: { name: string; value: string; applyMethod: string }[] = named(run, "aws:rds/parameterGroup:ParameterGroup", "nbdb-parameters").inputs.parameters;
      const byName = Object.fromEntries(params.map((p) => [p.name, p]));
      expect(byName.shared_preload_libraries).to.deep.include({ value: "pg_stat_statements,pg_cron", applyMethod: "pending-reboot" });
      expect(byName["rds.force_ssl"]).to.deep.include({ value: "1" });
      expect(byName.max_wal_senders.applyMethod).to.equal("pending-reboot");
      expect(byName.max_slot_wal_keep_size.value).to.equal("8192");
      expect(byName.checkpoint_timeout.value).to.equal("900");
      // Bind parameters (the per-transaction data key) never reach the log.
      expect(byName.log_parameter_max_length_on_error.value).to.equal("0");
      expect(named(run, "aws:rds/parameterGroup:ParameterGroup", "nbdb-parameters").inputs.family).to.equal("postgres15");
    });

    it("runs PgBouncer with the shared pgbouncer.ini, TLS to the primary, and its auth file from Secrets Manager", () => {
      const [container] = JSON.parse(of(run, TASK)[0].inputs.containerDefinitions);
      expect(container.image).to.equal(PROD.images.pgbouncer);
      const ini = container.environment.find((e: any) => e.name === "PGBOUNCER_INI").value;
      expect(ini).to.include("neuralblitz = host=nbdb-primary.c0ffee.eu-west-1.rds.amazonaws.com port=5432 dbname=neuralblitz");
      expect(ini).to.include("server_tls_sslmode = verify-full\nserver_tls_ca_file = /etc/pgbouncer/server-ca.pem");
      expect(ini).to.include("pool_mode = transaction");
      expect(ini).to.include("max_client_conn = 5000");
      expect(ini).to.include("default_pool_size = 40");
      expect(container.secrets).to.deep.equal([
        { name: "PGBOUNCER_AUTH_FILE", valueFrom: "arn:aws:mock:::nbdb-pooler-auth-file" },
        { name: "PGBOUNCER_TLS_KEY", valueFrom: "arn:aws:mock:::nbdb-pooler-tls-key" },
      ]);
      expect(JSON.stringify(container)).not.to.include("pw-");
      expect(JSON.stringify(container)).not.to.include("PRIVATE KEY");
    });

    it("verifies RDS with the region's Amazon RDS CAs and presents the program's certificate to clients (issue 12 item 5, issue 15 item 1)", () => {
      const [container] = JSON.parse(of(run, TASK)[0].inputs.containerDefinitions);
      const env = Object.fromEntries(container.environment.map((e: any) => [e.name, e.value]));
      const ini: string = env.PGBOUNCER_INI;
      expect(ini).to.include("; TLS\nclient_tls_sslmode = require\nclient_tls_cert_file = /etc/pgbouncer/pooler.crt\nclient_tls_key_file = /etc/pgbouncer/pooler.key");
      const subjects = (env.PGBOUNCER_SERVER_CA as string).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!.map((pem) => new X509Certificate(pem).subject);
      expect(subjects.length).to.be.within(1, 8);
      for (const subject of subjects) expect(subject).to.include("eu-west-1");
      expect(container.command[0]).to.include('> /etc/pgbouncer/server-ca.pem').and.include("> /etc/pgbouncer/pooler.key");
      expect(env.PGBOUNCER_TLS_CERT).to.equal("-----BEGIN CERTIFICATE----- nbdb-pooler-tls-cert");
      // The certificate names the load balancer, and is issued by the stack's own CA.
      const request = named(run, "tls:index/certRequest:CertRequest", "nbdb-pooler-tls-request").inputs;
      // And the loopback, where the exporter in the task verifies PgBouncer.
      expect(request.dnsNames).to.deep.equal(["nbdb-pooler-0123.elb.eu-west-1.amazonaws.com", "localhost"]);
      expect(request.ipAddresses).to.deep.equal(["127.0.0.1"]);
      const cert = named(run, "tls:index/locallySignedCert:LocallySignedCert", "nbdb-pooler-tls-cert").inputs;
      expect(cert.allowedUses).to.include("server_auth");
      expect(cert.earlyRenewalHours).to.be.greaterThan(0);
      expect(named(run, "aws:secretsmanager/secretVersion:SecretVersion", "nbdb-pooler-tls-key").secretInputs).to.include("secretString");
      const policy = JSON.parse(named(run, "aws:iam/rolePolicy:RolePolicy", "nbdb-pooler-read-auth-file").inputs.policy);
      expect(policy.Statement[0].Resource).to.deep.equal(["arn:aws:mock:::nbdb-pooler-auth-file", "arn:aws:mock:::nbdb-pooler-tls-key", "arn:aws:mock:::nbdb-pooler-monitor-password"]);
    });

    it("connects the database layer to RDS with verify-full and the RDS CA bundle, never sslmode=require (issue 15 item 1)", () => {
      const provider = named(run, "pulumi:providers:postgresql", "nbdb-postgresql").inputs;
      expect(provider).to.include({ sslmode: "verify-full", sslrootcert: RDS_CA_FILE, superuser: "false" });
      const admin = named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-admin-setup");
      expect(admin.inputs.connection).to.include(`?sslmode=verify-full&sslrootcert=${RDS_CA_FILE}`);
      for (const r of run.registrations.filter((x) => typeof x.inputs.connection === "string")) {
        expect(r.inputs.connection, r.name).to.include("sslmode=verify-full&sslrootcert=").and.not.include("sslmode=require");
      }
    });

    it("lists the pooled logins' stable SCRAM verifiers in the secret auth file instead of auth_query (RDS hides pg_authid)", () => {
      const [container] = JSON.parse(of(run, TASK)[0].inputs.containerDefinitions);
      const ini = container.environment.find((e: any) => e.name === "PGBOUNCER_INI").value;
      expect(ini).to.not.match(/auth_query|auth_user/);
      const [version] = of(run, "aws:secretsmanager/secretVersion:SecretVersion");
      expect(version.secretInputs).to.include("secretString");
      const lines = version.inputs.secretString.trim().split("\n");
      expect(lines).to.have.length(5);
      expect(lines[1]).to.equal(`"nb_app" "${stableScramVerifier("nb_app", "pw-nbdb-nb_app")}"`);
      expect(lines[2]).to.equal(`"nb_auditor" "${stableScramVerifier("nb_auditor", "pw-nbdb-nb_auditor")}"`);
      // The read-only entry's login, for its reads on the replicas.
      expect(lines[3]).to.equal(`"nb_readonly" "${stableScramVerifier("nb_readonly", "pw-nbdb-nb_readonly")}"`);
      // The PgBouncer exporter's console login (a stats user).
      expect(lines[4]).to.equal(`"nb_monitor" "${stableScramVerifier("nb_monitor", "pw-nbdb-nb_monitor")}"`);
      expect(version.inputs.secretString).to.not.include("pw-nbdb-nb_app");
      expect(version.inputs.secretString).to.not.include("pw-nbdb-nb_readonly");
      expect(version.inputs.secretString).to.not.include("pw-nbdb-nb_monitor");
    });

    describe("PgBouncer's exporter: a sidecar in the pooler's task", () => {
      const sidecar = (r: Run = run) => JSON.parse(of(r, TASK)[0].inputs.containerDefinitions).find((c: any) => c.name === "pgbouncer-exporter");

      it("runs beside PgBouncer on its console as nb_monitor over verify-full against the pooler's CA at the loopback, its password an ECS secret", () => {
        const c = sidecar();
        const env = Object.fromEntries(c.environment.map((e: any) => [e.name, e.value]));
        expect(env.PGBOUNCER_EXPORTER_CONFIG).to.equal(
          pgbouncerExporterYaml({ listenHost: "0.0.0.0", listenPort: 9127, pooler: { host: "127.0.0.1", port: 6432 }, caFile: "/etc/pgbouncer-exporter/pooler-ca.crt" }),
        );
        expect(env.PGBOUNCER_EXPORTER_CONFIG).to.include("dsn: postgresql://nb_monitor:$(NBDB_MONITOR_PASSWORD)@127.0.0.1:6432/pgbouncer?sslmode=verify-full&sslrootcert=/etc/pgbouncer-exporter/pooler-ca.crt");
        // The pooler's CA (the one its certificate chains to), written at start beside the config.
        expect(env.PGBOUNCER_EXPORTER_POOLER_CA).to.equal("-----BEGIN CERTIFICATE----- nbdb-pooler-ca");
        expect(c.command[0]).to.include("> /etc/pgbouncer-exporter/config.yaml").and.include("> /etc/pgbouncer-exporter/pooler-ca.crt").and.include("exec pgbouncer-exporter --config=/etc/pgbouncer-exporter/config.yaml");
        expect(c.secrets).to.deep.equal([{ name: "NBDB_MONITOR_PASSWORD", valueFrom: "arn:aws:mock:::nbdb-pooler-monitor-password" }]);
        const secret = named(run, "aws:secretsmanager/secretVersion:SecretVersion", "nbdb-pooler-monitor-password");
        expect(secret.inputs.secretString).to.equal("pw-nbdb-nb_monitor");
        expect(secret.secretInputs).to.include("secretString");
        expect(JSON.stringify(c)).to.not.include("pw-");
        // A rotated password starts new tasks.
        expect(env.NBDB_MONITOR_PASSWORD_SHA256).to.match(/^[0-9a-f]{64}$/);
      });

      it("never stops the pooler: not essential, started once PgBouncer is healthy, restarted by ECS, logging to the task's log group", () => {
        const c = sidecar();
        expect(c).to.include({ essential: false });
        expect(c.dependsOn).to.deep.equal([{ containerName: "pgbouncer", condition: "HEALTHY" }]);
        expect(c.restartPolicy).to.deep.equal({ enabled: true });
        expect(c.portMappings).to.deep.equal([{ containerPort: 9127, protocol: "tcp" }]);
        expect(c.logConfiguration.options).to.deep.equal({ "awslogs-group": "/neuralblitz/nbdb-pooler", "awslogs-region": "eu-west-1", "awslogs-stream-prefix": "pgbouncer-exporter" });
        const [pgbouncer] = JSON.parse(of(run, TASK)[0].inputs.containerDefinitions);
        expect(pgbouncer).to.include({ name: "pgbouncer", essential: true });
        // No target of the load balancer: the service balances PgBouncer's port only.
        expect(of(run, ECS_SERVICE)[0].inputs.loadBalancers.map((b: any) => [b.containerName, b.containerPort])).to.deep.equal([["pgbouncer", 6432]]);
      });

      it("opens the exporter's port to allowedCidrs only", () => {
        const group = named(run, "aws:ec2/securityGroup:SecurityGroup", "nbdb-pooler");
        const metrics = group.inputs.ingress.filter((r: any) => r.fromPort === 9127 || r.toPort === 9127);
        expect(metrics).to.deep.equal([{ description: "metrics", protocol: "tcp", fromPort: 9127, toPort: 9127, cidrBlocks: PROD.aws.allowedCidrs }]);
        expect(named(run, "aws:ec2/securityGroup:SecurityGroup", "nbdb-database").inputs.ingress.some((r: any) => r.fromPort === 9127)).to.equal(false);
      });

      it("builds its image from the shared context for Fargate's x86_64 and pushes it to the stack's ECR repository, with ECR's credentials; the task runs it by digest", () => {
        const repository = named(run, "aws:ecr/repository:Repository", "nbdb-pooler-pgbouncer-exporter");
        expect(repository.inputs).to.deep.include({ name: "nbdb-pooler-pgbouncer-exporter", imageScanningConfiguration: { scanOnPush: true }, forceDelete: false });
        const image = named(run, BUILT_IMAGE, "nbdb-pooler-pgbouncer-exporter-image");
        const build = pgbouncerExporterImageBuild();
        expect(image.inputs.imageName).to.equal(`123456789012.dkr.ecr.eu-west-1.amazonaws.com/nbdb-pooler-pgbouncer-exporter:${build.tag}`);
        expect(image.inputs.build).to.deep.include({ context: PGBOUNCER_EXPORTER_IMAGE_CONTEXT, platform: "linux/amd64", args: build.args });
        expect(image.inputs.build.args.REQUIREMENTS).to.equal(PGBOUNCER_EXPORTER_REQUIREMENTS.join(" "));
        expect(image.inputs.skipPush).to.not.equal(true);
        expect(image.inputs.registry).to.deep.equal({ server: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/nbdb-pooler-pgbouncer-exporter", username: "AWS", password: "mock-ecr-token" });
        expect(image.secretInputs).to.include("registry");
        expect(sidecar().image).to.equal(`sha256:built-${image.inputs.imageName}`);
        // Under the stack's AWS provider, like every AWS resource.
        expect(repository.provider).to.include("nbdb-aws");
      });

      it("runs the image the config pins instead, building and pushing nothing", async () => {
        const pinnedRef = `123456789012.dkr.ecr.eu-west-1.amazonaws.com/neuralblitz-pgbouncer-exporter:2.1.2@${DIGEST}`;
        const pinned = await deployed("prod", withKey(PROD, "images.pgbouncerExporter", pinnedRef));
        expect(sidecar(pinned).image).to.equal(pinnedRef);
        expect(of(pinned, BUILT_IMAGE)).to.deep.equal([]);
        expect(of(pinned, "aws:ecr/repository:Repository")).to.deep.equal([]);
        // A protected stack refuses a tag alone, as for every image.
        const tagged = await deploy("prod", withKey(PROD, "images.pgbouncerExporter", "neuralblitz-pgbouncer-exporter:2.1.2"));
        expect(String(tagged.error)).to.include("images.pgbouncerExporter").and.include("pinned by digest").and.include("pulumi config rm --path images.pgbouncerExporter");
        expect(tagged.registrations.filter((r) => r.type.startsWith("aws:"))).to.deep.equal([]);
      });

      it("exports no metric to CloudWatch, so it adds no alarm: the pooler's alarms stay the load balancer's", () => {
        const alarms = of(run, "aws:cloudwatch/metricAlarm:MetricAlarm");
        expect(alarms.filter((a) => !["AWS/RDS", "AWS/NetworkELB"].includes(a.inputs.namespace))).to.deep.equal([]);
      });
    });

    it("alarms on replica lag, free storage, connections and wraparound per instance, with the config's default thresholds", () => {
      const alarms = of(run, "aws:cloudwatch/metricAlarm:MetricAlarm").filter((a) => a.inputs.namespace === "AWS/RDS");
      const byName = Object.fromEntries(alarms.map((a) => [a.name, a.inputs]));
      expect(Object.keys(byName).sort()).to.deep.equal(
        ["primary-connections", "primary-free-storage", "primary-wraparound", ...[0, 1].flatMap((i) => [`replica-${i}-connections`, `replica-${i}-free-storage`, `replica-${i}-replica-lag`])]
          .map((n) => `nbdb-${n}`)
          .sort(),
      );
      for (const a of alarms) expect(a.inputs, a.name).to.include({ namespace: "AWS/RDS", period: 60, evaluationPeriods: ALARM_DEFAULTS.evaluationMinutes });
      expect(byName["nbdb-replica-1-replica-lag"]).to.include({ metricName: "ReplicaLag", comparisonOperator: "GreaterThanThreshold", threshold: ALARM_DEFAULTS.replicaLagSeconds });
      expect(byName["nbdb-replica-1-replica-lag"].dimensions).to.deep.equal({ DBInstanceIdentifier: "nbdb-replica-1" });
      expect(byName["nbdb-primary-free-storage"]).to.include({ metricName: "FreeStorageSpace", comparisonOperator: "LessThanThreshold", threshold: ALARM_DEFAULTS.freeStorageGb * 1024 ** 3 });
      expect(byName["nbdb-primary-wraparound"]).to.include({ metricName: "MaximumUsedTransactionIDs", threshold: ALARM_DEFAULTS.maxUsedTransactionIds });
      // 80% of the parameter group's max_connections.
      const maxConnections = Number(of(run, "aws:rds/parameterGroup:ParameterGroup")[0].inputs.parameters.find((p: any) => p.name === "max_connections").value);
      expect(byName["nbdb-primary-connections"]).to.include({ metricName: "DatabaseConnections", threshold: Math.floor(maxConnections * 0.8) });
    });

    it("alarms when fewer pooler tasks than the service runs are healthy behind the load balancer", () => {
      const all = of(run, "aws:cloudwatch/metricAlarm:MetricAlarm");
      const pooler = all.filter((a) => a.inputs.namespace !== "AWS/RDS");
      expect(pooler.map((a) => a.name)).to.deep.equal(["nbdb-pooler-healthy-tasks"]);
      const tasks = of(run, "aws:ecs/service:Service")[0].inputs.desiredCount;
      expect(tasks).to.be.at.least(1);
      expect(pooler[0].inputs).to.include({ namespace: "AWS/NetworkELB", metricName: "HealthyHostCount", statistic: "Minimum", comparisonOperator: "LessThanThreshold", threshold: tasks, period: 60, evaluationPeriods: ALARM_DEFAULTS.evaluationMinutes });
      const lb = of(run, "aws:lb/loadBalancer:LoadBalancer")[0].inputs.name;
      const tg = of(run, "aws:lb/targetGroup:TargetGroup")[0].name;
      expect(pooler[0].inputs.dimensions).to.deep.equal({ LoadBalancer: `net/${lb}/0123`, TargetGroup: `targetgroup/${tg}/4567` });
    });

    it("takes the alarms' thresholds and topic from aws.alarms", async () => {
      const topic = "arn:aws:sns:eu-west-1:123456789012:nbdb-alarms";
      const custom = await deployed("prod", withKey(PROD, "aws.alarms", { replicaLagSeconds: 15, freeStorageGb: 50, evaluationMinutes: 3, topicArn: topic }));
      const lag = of(custom, "aws:cloudwatch/metricAlarm:MetricAlarm").find((a) => a.name === "nbdb-replica-0-replica-lag")!.inputs;
      expect(lag).to.include({ threshold: 15, evaluationPeriods: 3 });
      expect(lag.alarmActions).to.deep.equal([topic]);
      const storage = of(custom, "aws:cloudwatch/metricAlarm:MetricAlarm").find((a) => a.name === "nbdb-primary-free-storage")!.inputs;
      expect(storage.threshold).to.equal(50 * 1024 ** 3);
      const pooler = of(custom, "aws:cloudwatch/metricAlarm:MetricAlarm").find((a) => a.name === "nbdb-pooler-healthy-tasks")!.inputs;
      expect(pooler).to.include({ evaluationPeriods: 3 });
      expect(pooler.okActions).to.deep.equal([topic]);
    });

    it("spreads the read-only entry over the RDS read replicas' addresses, verified against RDS's CA", () => {
      const [container] = JSON.parse(of(run, TASK)[0].inputs.containerDefinitions);
      const ini: string = container.environment.find((e: any) => e.name === "PGBOUNCER_INI").value;
      const entry = ini.split("\n").find((l) => l.startsWith("neuralblitz_readonly = "));
      expect(entry).to.equal(
        "neuralblitz_readonly = host=nbdb-replica-0.c0ffee.eu-west-1.rds.amazonaws.com,nbdb-replica-1.c0ffee.eu-west-1.rds.amazonaws.com port=5432 load_balance_hosts=round-robin dbname=neuralblitz",
      );
      expect(ini).to.include("server_tls_sslmode = verify-full");
    });

    it("replaces fixed-name resources by deleting first, and names from a prefix what cannot be deleted while in use (issue 15 item 9)", () => {
      // Their names carry what forces a replacement (the parameter group's family), or only a rename replaces them.
      const exempt = ["aws:rds/parameterGroup:ParameterGroup", "aws:rds/subnetGroup:SubnetGroup"];
      const fixed = run.registrations.filter((r) => r.type.startsWith("aws:") && !exempt.includes(r.type) && (typeof r.inputs.name === "string" || typeof r.inputs.identifier === "string"));
      expect(fixed.map((r) => r.type)).to.include.members([
        RDS, "aws:lb/loadBalancer:LoadBalancer", "aws:iam/role:Role", "aws:cloudwatch/logGroup:LogGroup", "aws:ecs/cluster:Cluster", ECS_SERVICE,
      ]);
      expect(fixed.filter((r) => !r.deleteBeforeReplace).map((r) => `${r.type} ${r.name}`)).to.deep.equal([]);
      for (const [type, prefix] of [["aws:ec2/securityGroup:SecurityGroup", "nbdb-"], ["aws:lb/targetGroup:TargetGroup", "nbdb-"], ["aws:secretsmanager/secret:Secret", "nbdb-pooler-"]]) {
        for (const r of of(run, type)) {
          expect(r.inputs, `${type} ${r.name}`).to.not.have.property("name");
          expect(r.inputs.namePrefix, `${type} ${r.name}`).to.be.a("string").and.satisfy((p: string) => p.startsWith(prefix));
        }
      }
      // The final snapshot's name is new for each primary, so a stack made again after a destroy can take one.
      expect(named(run, "random:index/randomId:RandomId", "nbdb-final-snapshot").inputs.byteLength).to.equal(4);
    });

    it("sizes max_connections from the pooler's settings and caps each PgBouncer task at its share (issue 15 item 4)", () => {
      // 2 tasks × 2 pooled logins × (pool 40 + reserve 5) = 180, plus 44 direct (migrator, readers, pg_cron, provider, administration).
      expect(connectionBudget({ processes: 2, pooledLogins: 2, defaultPoolSize: 40 })).to.deep.equal({ pooled: 180, direct: 44, maxConnections: 224 });
      const params: { name: string; value: string; applyMethod: string }[] = named(run, "aws:rds/parameterGroup:ParameterGroup", "nbdb-parameters").inputs.parameters;
      expect(params.find((x) => x.name === "max_connections")).to.deep.equal({ name: "max_connections", value: "224", applyMethod: "pending-reboot" });
      const [container] = JSON.parse(of(run, TASK)[0].inputs.containerDefinitions);
      const ini: string = container.environment.find((e: any) => e.name === "PGBOUNCER_INI").value;
      expect(ini).to.include("reserve_pool_size = 5\nmax_db_connections = 90\n");
      expect(named(run, "pulumi:providers:postgresql", "nbdb-postgresql").inputs.maxConnections).to.equal("4");
    });

    it("protects the primary and the replicas", () => {
      expect(run.registrations.filter((r) => r.protect && r.type === RDS).map((r) => r.name)).to.have.members(["nbdb-primary", "nbdb-replica-0", "nbdb-replica-1"]);
    });

    it("exports RDS addresses (not endpoints), the load balancer and TLS connection strings as a secret", async () => {
      const o = run.outputs;
      expect(await value(o.primary)).to.deep.equal({ host: "nbdb-primary.c0ffee.eu-west-1.rds.amazonaws.com", port: 5432 });
      expect((await value(o.replicas)).map((r) => r.host)).to.deep.equal([
        "nbdb-replica-0.c0ffee.eu-west-1.rds.amazonaws.com",
        "nbdb-replica-1.c0ffee.eu-west-1.rds.amazonaws.com",
      ]);
      expect(await value(o.pooler)).to.deep.equal({ host: "nbdb-pooler-0123.elb.eu-west-1.amazonaws.com", port: 6432, poolMode: "transaction" });
      expect(await pulumi.isSecret(o.connections)).to.equal(true);
      const c = await value(o.connections);
      const rdsTls = `?sslmode=verify-full&sslrootcert=${RDS_CA_FILE}`;
      expect(c.migrator).to.equal(`postgresql://nb_migrator:pw-nbdb-nb_migrator@nbdb-primary.c0ffee.eu-west-1.rds.amazonaws.com:5432/neuralblitz${rdsTls}`);
      const poolerCaFile = path.join(process.env.NBDB_HOME!, "pulumi-prod", "pooler-ca.pem");
      expect(c.readonly).to.equal(`postgresql://nb_readonly:pw-nbdb-nb_readonly@nbdb-pooler-0123.elb.eu-west-1.amazonaws.com:6432/neuralblitz_readonly?sslmode=verify-full&sslrootcert=${poolerCaFile}`);
      expect(c.app).to.equal(`postgresql://nb_app:pw-nbdb-nb_app@nbdb-pooler-0123.elb.eu-west-1.amazonaws.com:6432/neuralblitz?sslmode=verify-full&sslrootcert=${poolerCaFile}`);
      expect(c.auditor).to.include(`sslrootcert=${poolerCaFile}`);
      expect(JSON.stringify(c)).to.not.match(/sslmode=(disable|require)/);
      // The CAs are exported (public) for clients elsewhere, and the pooler's is written where the URLs point.
      const exported = await value(o.tls);
      expect(await pulumi.isSecret(o.tls)).to.equal(false);
      expect(exported.serverCa).to.equal(fs.readFileSync(RDS_CA_FILE, "utf8"));
      expect(exported.poolerCa).to.equal("-----BEGIN CERTIFICATE----- nbdb-pooler-ca");
      expect(fs.readFileSync(poolerCaFile, "utf8")).to.equal(exported.poolerCa);
    });
  });

  describe("prod restored to a point in time of another stack (RDS point-in-time recovery)", () => {
    const at = new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, "Z");

    it("creates the primary from the source at that time, its own identifier, password and replicas; the restore source is never re-read", async () => {
      const run = await deployed("prod", withKey(withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary-old", time: at }), "dataKey", SOURCE_KEY));
      const primary = named(run, RDS, "nbdb-primary");
      expect(primary.inputs.restoreToPointInTime).to.deep.equal({ sourceDbInstanceIdentifier: "nbdb-primary-old", restoreTime: at });
      expect(primary.inputs).to.include({ identifier: "nbdb-primary", password: "pw-nbdb-admin", backupRetentionPeriod: 14, deletionProtection: true });
      // Database and master user come from the source's backups.
      expect(primary.inputs).not.to.have.any.keys("dbName", "username");
      expect(primary.ignoreChanges).to.include("restoreToPointInTime");
      expect(named(run, RDS, "nbdb-replica-0").inputs.replicateSourceDb).to.equal("nbdb-primary");
    });

    it("converges the restored instance's roles and schema with idempotent SQL the master user may run, never creating them again", async () => {
      // The instance comes with the source's roles and schema: creating them would fail pulumi up.
      const run = await deployed("prod", withKey(withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary-old", time: at }), "dataKey", SOURCE_KEY));
      expect(of(run, "postgresql:index/role:Role")).to.deep.equal([]);
      expect(of(run, "postgresql:index/schema:Schema")).to.deep.equal([]);
      const roles = named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-restored-roles");
      expect(roles.inputs.sql).to.include("ALTER ROLE nb_app WITH LOGIN").and.include(stableScramVerifier("nb_app", "pw-nbdb-nb_app"));
      // RDS's master is no superuser: PostgreSQL refuses it these attributes, even to turn them off.
      expect(roles.inputs.sql).to.not.match(/SUPERUSER|REPLICATION|BYPASSRLS/);
      expect(roles.inputs.sql).to.not.include("rolname = 'nb_replicator'");
      expect(named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-restored-schema").inputs.sql).to.equal(restoredSchemaSql());
    });

    it("takes the latest restorable time when asked", async () => {
      const run = await deployed("prod", withKey(withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary-old", time: "latest" }), "dataKey", SOURCE_KEY));
      expect(named(run, RDS, "nbdb-primary").inputs.restoreToPointInTime).to.deep.equal({ sourceDbInstanceIdentifier: "nbdb-primary-old", useLatestRestorableTime: true });
    });

    it("creates a new database, not a restore, without the key", async () => {
      const primary = named(await deployed("prod", PROD), RDS, "nbdb-primary");
      expect(primary.inputs).not.to.have.any.keys("restoreToPointInTime");
      expect(primary.inputs).to.include({ dbName: "neuralblitz", username: "postgres" });
    });
  });

  describe("a Docker stack restored to a point in time of another (docker.restoreFrom)", () => {
    const at = new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
    let run: Run & { outputs: StackOutputs };
    before(async () => {
      run = await deployed("review-7", { docker: { restoreFrom: { stack: "dev", time: at } }, dataKey: SOURCE_KEY });
    });

    it("exports the source's data key given in its config (a secret), which encrypted the restored columns", async () => {
      expect(await pulumi.isSecret(run.outputs.dataKey)).to.equal(true);
      expect(await value(run.outputs.dataKey)).to.equal(SOURCE_KEY);
    });

    it("restores the new primary's empty volume from the source's repository volume, mounted read-only, before the primary starts", () => {
      const restore = named(run, CONTAINER, "nbdb-restore");
      const primary = named(run, CONTAINER, "nbdb-primary");
      expect(restore.inputs.name).to.equal("nbdb-restore-review-7");
      expect(restore.inputs.volumes).to.deep.include.members([
        { volumeName: "nbdb-primary-data-review-7", containerPath: "/var/lib/postgresql/data" },
        { volumeName: "nbdb-backup-repo", containerPath: "/var/lib/pgbackrest-source", readOnly: true },
      ]);
      // It runs to its end while pulumi up waits, once: no restart, not kept running.
      expect(restore.inputs).to.include({ restart: "no", mustRun: false, attach: true });
      expect(primary.dependencies).to.include(restore.urn);
      expect(restore.dependencies).to.include(named(run, VOLUME, "nbdb-primary-data").urn);
      // The same volume, which the primary then runs on; its own repository stays its own.
      expect(primary.inputs.volumes).to.deep.include.members([
        { volumeName: "nbdb-primary-data-review-7", containerPath: "/var/lib/postgresql/data" },
        { volumeName: "nbdb-backup-repo-review-7", containerPath: "/var/lib/pgbackrest" },
      ]);
      expect(primary.inputs.command.join(" ")).to.include("--stanza=nbdb-review-7 ");
    });

    it("runs the shared restore script with the source's stanza and the time, after the image's server settings", () => {
      const restore = named(run, CONTAINER, "nbdb-restore");
      expect(uploaded(restore, "/etc/postgresql/neuralblitz/restore.sh")).to.equal(
        restoreScript({
          configFile: "/etc/postgresql/neuralblitz/pgbackrest-source.conf",
          stanza: "nbdb",
          target: at,
          socketDir: "/var/run/postgresql",
          port: 5432,
          superuser: "postgres",
          database: "neuralblitz",
          finishSqlFile: "/etc/postgresql/neuralblitz/restore-finish.sql",
        }),
      );
      const conf = uploaded(restore, "/etc/postgresql/neuralblitz/pgbackrest-source.conf");
      expect(conf).to.include("[nbdb]\n").and.include("repo1-path=/var/lib/pgbackrest-source\n");
      expect(restore.inputs.entrypoints[2]).to.include('exec gosu postgres sh /etc/postgresql/neuralblitz/restore.sh "$@"');
      // The primary's settings (max_connections and the rest must be at least the source's to recover).
      const primary = named(run, CONTAINER, "nbdb-primary");
      const settings = (args: string[]) => args.filter((_, i) => args[i - 1] === "-c").filter((kv) => !/^archive_(mode|command)=/.test(kv));
      expect(restore.inputs.command[0]).to.equal("-c");
      expect(settings(restore.inputs.command)).to.deep.equal(settings(primary.inputs.command));
      expect(uploaded(restore, "/etc/postgresql/neuralblitz/pg_hba.conf")).to.include("local all postgres peer");
    });

    it("finishes the restored primary with this stack's platform passwords, as a secret file", () => {
      const restore = named(run, CONTAINER, "nbdb-restore");
      expect(uploaded(restore, "/etc/postgresql/neuralblitz/restore-finish.sql")).to.equal(
        restoreFinishSql({ admin: "pw-nbdb-admin", replication: "pw-nbdb-nb_replicator", poolerAuth: "pw-nbdb-nb_pgbouncer", backup: "pw-nbdb-nb_backup" }),
      );
      expect(restore.secretInputs).to.include("uploads");
      expect(restoreFinishSql({ admin: "a", replication: "r", poolerAuth: "p", backup: "b" })).to.include(`ALTER ROLE postgres WITH PASSWORD '${stableScramVerifier("postgres", "a")}'`).and.include("ALTER SYSTEM RESET ALL");
    });

    it("reads the key only at creation: a later edit never reaches the restore container", () => {
      const restore = named(run, CONTAINER, "nbdb-restore");
      expect(restore.ignoreChanges).to.include.members(["uploads", "volumes", "command", "entrypoints", "image"]);
    });

    it("starts the primary only after a restore that succeeded, and refuses a volume holding a database no restore made", () => {
      expect(() => restoreOutcome(0, "nbdb-restore")).to.not.throw();
      expect(() => restoreOutcome(RESTORE_REFUSED_EXIT, "nbdb-restore")).to.throw(/already holds a database .*pulumi config rm --path docker\.restoreFrom\. Nothing was changed/);
      expect(() => restoreOutcome(75, "nbdb-restore-review-7")).to.throw(/failed \(exit code 75\); docker logs nbdb-restore-review-7 says why.*pulumi up --replace <the URN of nbdb-restore/);
      expect(() => restoreOutcome(undefined, "nbdb-restore")).to.throw(/failed/);
    });

    it("converges the restored roles and schema with idempotent SQL and this stack's passwords, never creating them again", () => {
      // Creating a role or schema the restored database already holds would fail pulumi up.
      expect(of(run, "postgresql:index/role:Role")).to.deep.equal([]);
      expect(of(run, "postgresql:index/schema:Schema")).to.deep.equal([]);
      const roles = named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-restored-roles");
      expect(roles.inputs.sql).to.include(`ALTER ROLE nb_app WITH LOGIN`).and.include(stableScramVerifier("nb_app", "pw-nbdb-nb_app"));
      expect(roles.inputs.sql).to.include("IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'nb_owner')");
      expect(roles.inputs.sql).to.not.include("rolname = 'nb_replicator'");
      expect(roles.secretInputs).to.include("sql");
      const schema = named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-restored-schema");
      expect(schema.inputs.sql).to.equal(restoredSchemaSql());
      expect(schema.dependencies).to.include(named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-admin-setup").urn);
      expect(named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-admin-setup").dependencies).to.include(roles.urn);
    });

    it("creates a new, empty database without the key: no restore container, the primary waits for nothing", async () => {
      const plain = await deployed("review-7", {});
      expect(of(plain, CONTAINER).map((r) => r.name)).to.not.include("nbdb-restore");
      expect(named(plain, CONTAINER, "nbdb-primary").inputs.envs).to.include("POSTGRES_INITDB_ARGS=--data-checksums");
    });
  });

  describe("review-42: dev's settings, suffixed and destroyable", () => {
    let run: Run & { outputs: StackOutputs };
    before(async () => {
      run = await deployed("review-42", {});
    });

    it("takes dev's platform, replica count and pooler settings from Pulumi.dev.yaml", async () => {
      expect(of(run, CONTAINER)).to.have.length(5 + DEV.replicas);
      expect(uploaded(named(run, CONTAINER, "nbdb-pooler"), "/etc/pgbouncer/pgbouncer.ini")).to.include(`default_pool_size = ${DEV.pooler.defaultPoolSize}`);
    });

    it("suffixes every physical name with the stack name", () => {
      const names = physicalNames(run).filter((n) => !n.includes(":"));
      expect(names).to.have.members([
        "nbdb-network-review-42",
        "nbdb-primary-data-review-42",
        "nbdb-primary-review-42",
        "nbdb-replica-0-data-review-42",
        "nbdb-replica-0-review-42",
        "nbdb-pooler-review-42",
        "nbdb-backup-review-42",
        "nbdb-backup-repo-review-42",
        "nbdb-postgres-exporter-review-42",
        "nbdb-pgbouncer-exporter-review-42",
      ]);
      expect(uploaded(named(run, CONTAINER, "nbdb-pooler"), "/etc/pgbouncer/pgbouncer.ini")).to.include("host=nbdb-primary-review-42 ");
      expect(uploaded(named(run, CONTAINER, "nbdb-pgbouncer-exporter"), "/etc/pgbouncer-exporter/config.yaml")).to.include("@nbdb-pooler-review-42:6432/pgbouncer?");
    });

    it("lets Docker choose the published ports, so it runs beside dev, and exports the chosen ones", async () => {
      for (const c of of(run, CONTAINER).filter((x) => x.inputs.ports)) expect(c.inputs.ports[0].external).to.equal(undefined);
      expect((await value(run.outputs.primary)).port).to.be.greaterThan(49151);
    });

    it("protects nothing", () => {
      expect(run.registrations.filter((r) => r.protect)).to.deep.equal([]);
    });

    it("overrides dev's settings key by key, nested ones included", async () => {
      const own = await deployed("review-43", { pooler: { defaultPoolSize: 7 } });
      const ini = uploaded(named(own, CONTAINER, "nbdb-pooler"), "/etc/pgbouncer/pgbouncer.ini");
      expect(ini).to.include("default_pool_size = 7");
      expect(ini).to.include(`max_client_conn = ${DEV.pooler.maxClientConnections}`);
    });

    it("is suffixed and unprotected on AWS too", async () => {
      const aws = await deployed("review-7", { platform: "aws", aws: PROD.aws, deletionProtection: false });
      expect(of(aws, RDS).map((r) => r.inputs.identifier)).to.have.members(["nbdb-primary-review-7", "nbdb-replica-0-review-7"]);
      expect(named(aws, RDS, "nbdb-primary").inputs).to.include({ deletionProtection: false, skipFinalSnapshot: true });
      expect(named(aws, "aws:secretsmanager/secret:Secret", "nbdb-pooler-auth-file").inputs.recoveryWindowInDays).to.equal(0);
      expect(aws.registrations.filter((r) => r.protect)).to.deep.equal([]);
    });
  });

  describe("scaling replicas 2 → 3 → 1", () => {
    for (const [stack, base, type] of [["dev", DEV, CONTAINER], ["prod", PROD, RDS]] as const) {
      it(`changes only the tail on ${base.platform}`, async () => {
        const runs = [];
        for (const n of [2, 3, 1]) runs.push(await deployed(stack, { ...base, replicas: n }));
        const names = runs.map((r) => r.registrations.map((x) => `${x.type} ${x.name}`));
        const [two, three, one] = names;
        const added = three.filter((n) => !two.includes(n));
        const removed = two.filter((n) => !one.includes(n));
        expect(added).to.include(`${type} nbdb-replica-2`);
        expect(added.filter((n) => !n.includes("replica-2"))).to.deep.equal([]);
        expect(two.filter((n) => !three.includes(n))).to.deep.equal([]);
        expect(removed).to.include(`${type} nbdb-replica-1`);
        expect(removed.filter((n) => !n.includes("replica-1"))).to.deep.equal([]);
        expect(one.filter((n) => !two.includes(n))).to.deep.equal([]);
        // The primary does not change (its settings are sized for the most replicas), so it never restarts.
        const primaryInputs = runs.map((r) => named(r, type, "nbdb-primary").inputs);
        expect(primaryInputs[1]).to.deep.equal(primaryInputs[0]);
        expect(primaryInputs[2]).to.deep.equal(primaryInputs[0]);
        // The pooler's read-only entry lists exactly the replicas of each run.
        const readonlyHosts = runs.map((r) => {
          const ini: string =
            type === CONTAINER
              ? uploaded(named(r, CONTAINER, "nbdb-pooler"), "/etc/pgbouncer/pgbouncer.ini")
              : JSON.parse(of(r, TASK)[0].inputs.containerDefinitions)[0].environment.find((e: any) => e.name === "PGBOUNCER_INI").value;
          return /^neuralblitz_readonly = host=(\S+) /m.exec(ini)![1].split(",").length;
        });
        expect(readonlyHosts).to.deep.equal([2, 3, 1]);
      });
    }
  });

  describe("password changes reach what started with the old one (issue 15 item 8)", () => {
    const passwords = (app: string) => ({ admin: "a", replication: "r", poolerAuth: "p", pooledLogins: { nb_app: app, nb_auditor: "aud" }, backup: "bk" });
    const common = { postgresVersion: "15" as const, replicas: 0, pooler: { poolMode: "transaction" as const, maxClientConnections: 10, defaultPoolSize: 5 }, physicalSuffix: "", protectData: false, images: IMAGES };

    it("starts new ECS tasks when the auth file changes: its digest is part of the task definition", async () => {
      const digestFor = async (app: string) => {
        const registrations = await installMocks("prod", {});
        new AwsCluster("c", { ...common, aws: { ...PROD.aws, alarms: ALARM_DEFAULTS, multiAz: false, poolerTasks: 1, applyImmediately: true }, passwords: passwords(app) });
        await registrationsDone();
        const task = registrations.find((r) => r.type === TASK)!;
        expect(task.secretInputs).to.not.include("containerDefinitions");
        const [container] = JSON.parse(task.inputs.containerDefinitions);
        return container.environment.find((e: any) => e.name === "PGBOUNCER_AUTH_FILE_SHA256").value as string;
      };
      const before = await digestFor("app-1");
      expect(before).to.match(/^[0-9a-f]{64}$/);
      expect(await digestFor("app-2")).to.not.equal(before);
      expect(await digestFor("app-1")).to.equal(before);
    });

    it("sets the Docker platform roles' passwords again whenever they change, as a secret administrator step", async () => {
      const run = await deployed("dev", DEV);
      const step = named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-platform-roles");
      expect(step.secretInputs).to.include.members(["sql", "connection"]);
      expect(step.inputs.sql).to.include(`PASSWORD '${stableScramVerifier("nb_replicator", "pw-nbdb-nb_replicator")}'`);
      expect(step.inputs.sql).to.include(`PASSWORD '${stableScramVerifier("nb_pgbouncer", "pw-nbdb-nb_pgbouncer")}'`);
      expect(step.inputs.sql).to.not.include("pw-nbdb");
      const prod = await deployed("prod", PROD);
      expect(prod.registrations.filter((r) => r.name === "nbdb-platform-roles")).to.deep.equal([]);
    });

    it("grants the replication role pg_rewind's functions in database postgres on Docker (the bootstrap rewinds a former primary as it), after the platform roles", async () => {
      const run = await deployed("dev", DEV);
      const step = named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-rewind-grants");
      expect(step.inputs.sql).to.equal(rewindGrantsSql());
      for (const f of REWIND_FUNCTIONS) expect(step.inputs.sql).to.include(`GRANT EXECUTE ON FUNCTION ${f} TO nb_replicator;`);
      expect(new URL(step.inputs.connection).pathname).to.equal("/postgres");
      expect(step.secretInputs).to.include("connection");
      expect(step.dependencies).to.include(named(run, "pulumi-nodejs:dynamic/neuralblitz:AdminSql", "nbdb-platform-roles").urn);
      const prod = await deployed("prod", PROD);
      expect(prod.registrations.filter((r) => r.name === "nbdb-rewind-grants")).to.deep.equal([]);
    });
  });

  describe("major version changes (issue 15 item 3)", () => {
    const provider = majorVersionProvider();

    for (const platform of ["docker", "aws"] as const) {
      it(`refuses 15 → 16 on ${platform} before any server resource changes, with the steps`, async () => {
        const refused = await provider.check!({ version: "15", platform }, { version: "16", platform });
        expect(refused.failures).to.have.length(1);
        expect(refused.failures![0].property).to.equal("version");
        expect(refused.failures![0].reason).to.include("postgresVersion 15 → 16 is a major version change").and.include("pulumi config set postgresVersion 15");
        expect(refused.failures![0].reason).to.include(platform === "docker" ? "pg_dumpall" : "blue/green");
        // A first deploy, or the same version, passes.
        expect((await provider.check!({}, { version: "16", platform })).failures ?? []).to.deep.equal([]);
        expect((await provider.check!({ version: "15", platform }, { version: "15", platform })).failures ?? []).to.deep.equal([]);
      });
    }

    for (const [stack, base, guarded] of [
      ["dev", DEV, [[CONTAINER, "nbdb-primary"], [CONTAINER, "nbdb-replica-0"], [VOLUME, "nbdb-primary-data"], [VOLUME, "nbdb-backup-repo"], [BUILT_IMAGE, "nbdb-postgres-image"]]],
      ["prod", PROD, [[RDS, "nbdb-primary"], [RDS, "nbdb-replica-0"], ["aws:rds/parameterGroup:ParameterGroup", "nbdb-parameters"]]],
    ] as const) {
      it(`makes every ${base.platform} server resource wait for the version guard`, async () => {
        const run = await deployed(stack, base);
        const guard = named(run, "pulumi-nodejs:dynamic/neuralblitz:PostgresMajorVersion", "nbdb-postgres-major-version");
        expect(guard.inputs).to.deep.include({ version: "15", platform: base.platform });
        for (const [type, name] of guarded) expect(named(run, type, name).dependencies, name).to.include(guard.urn);
      });
    }
  });

  describe("the platform's admin login (for the database layer)", () => {
    for (const [stack, make] of [
      ["dev", () => new DockerCluster("c", { stack: "dev", postgresVersion: "15", replicas: 0, pooler: { poolMode: "transaction", maxClientConnections: 10, defaultPoolSize: 5 }, docker: { nodeMemoryMb: 512, nodeCpus: 1 }, passwords: { admin: "a", replication: "r", poolerAuth: "p", pooledLogins: { nb_app: "app", nb_auditor: "aud" }, backup: "bk" }, physicalSuffix: "", protectData: false, images: IMAGES, caFile: "/tmp/nbdb-ca.crt" })],
      ["prod", () => new AwsCluster("c", { postgresVersion: "15", replicas: 0, pooler: { poolMode: "transaction", maxClientConnections: 10, defaultPoolSize: 5 }, aws: { ...PROD.aws, alarms: ALARM_DEFAULTS, multiAz: false, poolerTasks: 1 }, passwords: { admin: "a", replication: "r", poolerAuth: "p", pooledLogins: { nb_app: "app", nb_auditor: "aud" }, backup: "bk" }, physicalSuffix: "", protectData: false, images: IMAGES })],
    ] as const) {
      it(`is a secret on ${stack}`, async () => {
        await installMocks(stack, {});
        const cluster = make();
        expect(await pulumi.isSecret(cluster.admin)).to.equal(true);
        const admin = await value(cluster.admin);
        expect(admin).to.include({ username: "postgres", password: "a", superuser: stack === "dev" });
        await registrationsDone();
      });
    }
  });

  describe("invalid config", () => {
    const cases: [string, string, Config, string][] = [
      ["no platform", "dev", withKey(DEV, "platform", undefined), "neuralblitz-db:platform = (unset): expected one of docker, aws"],
      ["an unknown platform", "dev", withKey(DEV, "platform", "kubernetes"), 'neuralblitz-db:platform = "kubernetes"'],
      ["too many replicas", "dev", withKey(DEV, "replicas", 9), "neuralblitz-db:replicas = 9: expected a whole number from 0 to 5"],
      ["negative replicas", "dev", withKey(DEV, "replicas", -1), "neuralblitz-db:replicas = -1"],
      ["replicas in words", "dev", withKey(DEV, "replicas", "two"), 'neuralblitz-db:replicas = "two"'],
      ["an unsupported PostgreSQL", "dev", withKey(DEV, "postgresVersion", "14"), "neuralblitz-db:postgresVersion = 14: expected one of 15, 16, 17"],
      ["a non-boolean deletionProtection", "prod", withKey(PROD, "deletionProtection", "yes"), 'neuralblitz-db:deletionProtection = "yes": expected true or false'],
      ["an unknown pool mode", "dev", withKey(DEV, "pooler.poolMode", "sessions"), 'neuralblitz-db:pooler.poolMode = "sessions"'],
      ["no client connections", "dev", withKey(DEV, "pooler.maxClientConnections", 0), "neuralblitz-db:pooler.maxClientConnections = 0"],
      ["a pool bigger than the server allows", "dev", withKey(DEV, "pooler.defaultPoolSize", 500), "neuralblitz-db:pooler.defaultPoolSize = 500"],
      ["a negative role timeout", "dev", withKey(DEV, "timeouts.nb_app.statementMs", -1), "neuralblitz-db:timeouts.nb_app.statementMs = -1: expected a whole number from 0 to 86400000"],
      ["timeouts for a role that has none", "dev", withKey(DEV, "timeouts.nb_migrator", {}), "neuralblitz-db:timeouts.nb_migrator = {}: unknown key"],
      [
        "pools a small Docker server cannot hold",
        "dev",
        withKey(withKey(DEV, "pooler.defaultPoolSize", 50), "docker.nodeMemoryMb", 256),
        "neuralblitz-db:pooler.defaultPoolSize = 50: needs max_connections = 154 (1 pooler process × 2 pooled logins × (pool 50 + reserve 5) = 110, plus 44 direct), more than the 128 a server of docker.nodeMemoryMb = 256 holds",
      ],
      ["no premade partitions", "dev", withKey(DEV, "partitions.metrics.premake", 0), "neuralblitz-db:partitions.metrics.premake = 0: expected a whole number from 1 to 52"],
      ["an endless retention", "dev", withKey(DEV, "partitions.metrics.retentionDays", 99999), "neuralblitz-db:partitions.metrics.retentionDays = 99999: expected a whole number from 1 to 3650"],
      ["a retention for the audit trail, which is kept forever", "dev", withKey(DEV, "partitions.golden_dag_audit.retentionDays", 30), "neuralblitz-db:partitions.golden_dag_audit.retentionDays = 30: unknown key"],
      ["the former one premake for every table", "dev", withKey(DEV, "partitions.premake", 4), "neuralblitz-db:partitions.premake = 4: unknown key; known keys: quantum_neuron_history, consciousness_snapshots, golden_dag_audit, metrics"],
      ["a table that is not partitioned", "dev", withKey(DEV, "partitions.users.premake", 4), "neuralblitz-db:partitions.users = {\"premake\":4}: unknown key"],
      ["a privileged port", "dev", withKey(DEV, "docker.primaryPort", 80), "neuralblitz-db:docker.primaryPort = 80"],
      ["the pooler on the primary's port", "dev", withKey(DEV, "docker.poolerPort", 15432), "neuralblitz-db:docker.poolerPort = 15432: must differ"],
      ["the primary among the replica ports", "dev", withKey(DEV, "docker.primaryPort", 15444), "neuralblitz-db:docker.primaryPort = 15444: must lie outside"],
      ["too little memory", "dev", withKey(DEV, "docker.nodeMemoryMb", 10), "neuralblitz-db:docker.nodeMemoryMb = 10"],
      ["no aws section", "prod", withKey(PROD, "aws", undefined), "neuralblitz-db:aws = (unset)"],
      ["a region name in words", "prod", withKey(PROD, "aws.region", "Ireland"), 'neuralblitz-db:aws.region = "Ireland"'],
      ["an instance class without db.", "prod", withKey(PROD, "aws.instanceClass", "r6g.xlarge"), 'neuralblitz-db:aws.instanceClass = "r6g.xlarge"'],
      ["too little storage", "prod", withKey(PROD, "aws.allocatedStorageGb", 5), "neuralblitz-db:aws.allocatedStorageGb = 5"],
      ["an autoscaling ceiling under the storage", "prod", withKey(PROD, "aws.maxAllocatedStorageGb", 100), "neuralblitz-db:aws.maxAllocatedStorageGb = 100: must be at least"],
      ["no backups", "prod", withKey(PROD, "aws.backupRetentionDays", 0), "neuralblitz-db:aws.backupRetentionDays = 0"],
      ["too short a retention for a protected stack", "prod", withKey(PROD, "aws.backupRetentionDays", 3), "neuralblitz-db:aws.backupRetentionDays = 3: a protected stack"],
      ["a retention RDS does not offer", "prod", withKey(PROD, "aws.backupRetentionDays", 36), "neuralblitz-db:aws.backupRetentionDays = 36"],
      [
        "a Docker restore without the source's data key",
        "review-7",
        { docker: { restoreFrom: { stack: "dev", time: "latest" } } },
        'neuralblitz-db:dataKey = (unset): docker.restoreFrom restores rows whose encrypted columns the source stack\'s data key encrypted; give this stack that key (a stack restored earlier that has written rows with its own key since: its own, pulumi stack output --show-secrets dataKey). The fix: pulumi config set --secret dataKey "$(pulumi stack output --stack dev --show-secrets dataKey)"',
      ],
      ["an RDS restore without the source's data key", "prod", withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary-old", time: "latest" }), "neuralblitz-db:dataKey = (unset): aws.restoreFrom restores rows"],
      ["a data key too short to be one", "dev", withKey(DEV, "dataKey", "short"), "neuralblitz-db:dataKey = \"short\": must be 32 to 1024 printable characters without spaces"],
      ["a restore time in the future", "prod", withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary", time: "2099-01-01T00:00:00Z" }), "neuralblitz-db:aws.restoreFrom.time = \"2099-01-01T00:00:00Z\": is in the future"],
      ["a restore time older than any backup", "prod", withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary", time: "2020-01-01T00:00:00Z" }), "is older than RDS keeps backups"],
      ["a restore time without its zone", "prod", withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary", time: "2026-12-01 10:00" }), "neuralblitz-db:aws.restoreFrom.time = \"2026-12-01 10:00\": expected a UTC time"],
      ["a malformed restore source", "prod", withKey(PROD, "aws.restoreFrom", { source: "Prod_DB", time: "latest" }), 'neuralblitz-db:aws.restoreFrom.source = "Prod_DB"'],
      ["a restore without a source", "prod", withKey(PROD, "aws.restoreFrom", { time: "latest" }), "neuralblitz-db:aws.restoreFrom.source = (unset)"],
      ["a misspelt restore key", "prod", withKey(PROD, "aws.restoreFrom", { source: "nbdb-primary", time: "latest", at: "x" }), 'neuralblitz-db:aws.restoreFrom.at = "x": unknown key'],
      ["a Docker restore from the stack itself", "dev", withKey(DEV, "docker.restoreFrom", { stack: "dev", time: "latest" }), 'neuralblitz-db:docker.restoreFrom.stack = "dev": names this stack itself'],
      ["a Docker restore from a stack with this stack's names", "dev", withKey(DEV, "docker.restoreFrom", { stack: "staging", time: "latest" }), 'neuralblitz-db:docker.restoreFrom.stack = "staging": names a stack whose volumes have this stack\'s own names'],
      ["a Docker restore time in the future", "dev", withKey(DEV, "docker.restoreFrom", { stack: "review-3", time: "2099-01-01T00:00:00Z" }), 'neuralblitz-db:docker.restoreFrom.time = "2099-01-01T00:00:00Z": is in the future'],
      ["a Docker restore time without its zone", "dev", withKey(DEV, "docker.restoreFrom", { stack: "review-3", time: "2026-12-01 10:00" }), 'neuralblitz-db:docker.restoreFrom.time = "2026-12-01 10:00": expected a UTC time'],
      ["a Docker restore without a source", "dev", withKey(DEV, "docker.restoreFrom", { time: "latest" }), "neuralblitz-db:docker.restoreFrom.stack = (unset)"],
      ["a misspelt Docker restore key", "dev", withKey(DEV, "docker.restoreFrom", { source: "review-3", time: "latest" }), 'neuralblitz-db:docker.restoreFrom.source = "review-3": unknown key'],
      ["a malformed VPC id", "prod", withKey(PROD, "aws.vpcId", "vpc-xyz"), 'neuralblitz-db:aws.vpcId = "vpc-xyz"'],
      ["a single subnet", "prod", withKey(PROD, "aws.subnetIds", ["subnet-0a1b2c3d4e5f60001"]), "neuralblitz-db:aws.subnetIds = "],
      ["a malformed CIDR", "prod", withKey(PROD, "aws.allowedCidrs", ["10.0.0.0/33"]), 'neuralblitz-db:aws.allowedCidrs = ["10.0.0.0/33"]'],
      ["no pooler tasks", "prod", withKey(PROD, "aws.poolerTasks", 0), "neuralblitz-db:aws.poolerTasks = 0"],
      ["a connections alarm above 100%", "prod", withKey(PROD, "aws.alarms", { connectionsPercent: 150 }), "neuralblitz-db:aws.alarms.connectionsPercent = 150"],
      ["a wraparound alarm past wraparound", "prod", withKey(PROD, "aws.alarms", { maxUsedTransactionIds: 3_000_000_000 }), "neuralblitz-db:aws.alarms.maxUsedTransactionIds = 3000000000"],
      ["an alarm topic that is no SNS ARN", "prod", withKey(PROD, "aws.alarms", { topicArn: "alarms" }), 'neuralblitz-db:aws.alarms.topicArn = "alarms": expected an SNS topic ARN'],
      ["a misspelt alarm key", "prod", withKey(PROD, "aws.alarms", { replicaLag: 30 }), "neuralblitz-db:aws.alarms.replicaLag = 30: unknown key"],
      ["a non-boolean applyImmediately", "prod", withKey(PROD, "aws.applyImmediately", "later"), 'neuralblitz-db:aws.applyImmediately = "later": expected true or false'],
      ["a misspelt key", "dev", withKey(DEV, "replica", 2), "neuralblitz-db:replica = 2: unknown key"],
      ["a misspelt nested key", "dev", withKey(DEV, "pooler.poolmode", "session"), 'neuralblitz-db:pooler.poolmode = "session": unknown key'],
      ["a bare tag in a protected stack", "prod", withKey(PROD, "images.pgbouncer", "edoburu/pgbouncer:v1.25.2-p0"), 'neuralblitz-db:images.pgbouncer = "edoburu/pgbouncer:v1.25.2-p0": a protected stack (deletionProtection) runs images pinned by digest: <name>:<tag>@sha256:<digest>; look it up with docker buildx imagetools inspect edoburu/pgbouncer:v1.25.2-p0'],
      ["no image digest in a protected stack", "prod", withKey(PROD, "images", undefined), "neuralblitz-db:images.pgbouncer = (unset): a protected stack (deletionProtection) runs images pinned by digest"],
      ["a protected Docker stack without digests", "dev", withKey(DEV, "deletionProtection", true), "neuralblitz-db:images.postgres = (unset): a protected stack"],
      ["an image of another major version", "dev", withKey(DEV, "images.postgres", `postgres:16.13-bookworm@${DIGEST}`), "neuralblitz-db:images.postgres = \"postgres:16.13-bookworm@sha256:abab"],
      ["a malformed exporter image", "dev", withKey(DEV, "images.postgresExporter", "exporter"), 'neuralblitz-db:images.postgresExporter = "exporter": expected <name>:<tag>'],
      ["a malformed PgBouncer exporter image", "dev", withKey(DEV, "images.pgbouncerExporter", "exporter"), 'neuralblitz-db:images.pgbouncerExporter = "exporter": expected <name>:<tag>'],
      ["a malformed digest", "dev", withKey(DEV, "images.pgbouncer", "edoburu/pgbouncer:v1@sha256:xyz"), 'neuralblitz-db:images.pgbouncer = "edoburu/pgbouncer:v1@sha256:xyz": expected <name>:<tag>'],
      ["a protected review stack", "review-42", { deletionProtection: true }, "neuralblitz-db:deletionProtection = true: review stacks are always destroyable"],
      ["a review stack name too long for AWS names", "review-pull-request-12345", {}, "stack name 'review-pull-request-12345'"],
    ];
    for (const [what, stack, config, message] of cases) {
      it(`rejects ${what}, naming the key, before registering anything`, async () => {
        const run = await deploy(stack, config);
        expect(run.error, "expected the program to fail").to.be.instanceOf(Error);
        expect(run.error!.message).to.include(message);
        expect(run.registrations).to.deep.equal([]);
      });
    }

    it("never prints the value of a secret key, unknown or invalid (issue 15 item 12)", async () => {
      const secret = "s3cr3t-token-0123456789";
      const config = withKey(withKey(DEV, "apiToken", secret), "replicas", `${secret}-2`);
      const { error, registrations } = await deploy("dev", config, ["apiToken", "replicas"]);
      expect(error!.message).to.include("neuralblitz-db:apiToken = [secret]: unknown key");
      expect(error!.message).to.include("neuralblitz-db:replicas = [secret]: expected a whole number");
      expect(error!.message).to.not.include(secret);
      expect(registrations).to.deep.equal([]);
      // A nested key of a secret object is as secret as the object.
      const nested = await deploy("dev", withKey(DEV, "pooler.authToken", secret), ["pooler"]);
      expect(nested.error!.message).to.include("neuralblitz-db:pooler.authToken = [secret]").and.not.include(secret);
      // Plain keys still show their value, which is what makes the message useful.
      expect((await deploy("dev", withKey(DEV, "replicas", 9), ["apiToken"])).error!.message).to.include("neuralblitz-db:replicas = 9");
    });

    it("reports every bad key at once, each with the command that fixes it", async () => {
      const config = withKey(withKey(withKey(DEV, "replicas", 9), "pooler.poolMode", "x"), "postgresVersion", "9.6");
      const { error, registrations } = await deploy("dev", config);
      expect(error!.message).to.include("3 problems");
      expect(error!.message).to.include("fix: pulumi config set replicas <value>");
      expect(error!.message).to.include("fix: pulumi config set --path pooler.poolMode <value>");
      expect(registrations).to.deep.equal([]);
    });
  });
});
