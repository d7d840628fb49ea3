// A local server that behaves like RDS where it matters for the database layer (test/rdsLike.test.ts):
// TLS only, with a certificate from a CA generated for the test, so clients must verify it
// (verify-full); an administrator that is not a superuser (CREATEROLE and CREATEDB, the database's
// owner, cannot read pg_authid), as the RDS master user; pg_cron preloaded in the project database,
// created there by the real superuser (as RDS's rdsadmin) and usable by the administrator with the
// grant option (as rds_superuser); and a PgBouncer that reads its auth file instead of auth_query,
// with TLS on both sides, configured by the shared renderer.
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { connectionUrl } from "../client/outputs";
import { renderPgbouncerAuthFile, renderPgbouncerIni, POOLER_DEFAULTS } from "../infra/topology/pgbouncerIni";
import { renderConf, serverSettings } from "../infra/topology/postgresSettings";
import { stableScramVerifier } from "../infra/topology/scram";
import { ADMIN_USER } from "../infra/platform/types";
import { DATABASE } from "../schema/roles";
import { bin, localContext, LocalContext } from "../scripts/local/context";
import { HOST } from "../scripts/local/state";
import { chownToServer, freePort, processAlive, run, waitFor } from "../scripts/local/system";

const MiB = 1024 * 1024;
/** The bootstrap superuser: RDS keeps its own (rdsadmin) out of the customer's reach. */
const ROOT_USER = "rdsadmin";

export interface RdsLike {
  readonly dir: string;
  /** The CA that signed the server's and the pooler's certificates. */
  readonly caFile: string;
  readonly port: number;
  readonly poolerPort: number;
  /** The master user's password (ADMIN_USER, as on RDS). */
  readonly adminPassword: string;
  /** verify-full URLs against caFile. */
  readonly adminUrl: string;
  readonly rootUrl: string;
  url(user: string, password: string, database?: string): string;
  viaPooler(user: string, password: string): string;
  /** Starts the pooler with the pooled logins' verifiers in its auth file (no auth_query). */
  startPooler(authUserPassword: string, pooled: Readonly<Record<string, string>>): Promise<void>;
  stop(): Promise<void>;
}

function openssl(args: string[]): Promise<unknown> {
  return run("openssl", args, { timeoutMs: 60_000 });
}

/** A CA and one certificate for 127.0.0.1 (IP SAN): what RDS's endpoint certificates are to its CA. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string) => path.join(dir, n);
  await openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "2", "-subj", "/CN=nbdb test RDS CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", `/CN=${HOST}`]);
  fs.writeFileSync(f("server.ext"), `subjectAltName=IP:${HOST}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  await openssl(["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.crt"), "-days", "2", "-extfile", f("server.ext")]);
  return { ca: f("ca.crt"), cert: f("server.crt"), key: f("server.key") };
}

function writeServerFile(ctx: LocalContext, file: string, content: string): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
  chownToServer(file, ctx.user);
}

export async function startRdsLike(): Promise<RdsLike> {
  const ctx = localContext(`rdslike-${randomBytes(3).toString("hex")}`, () => undefined);
  const dir = path.join(process.env.NBDB_HOME!, ctx.stack);
  const data = path.join(dir, "data");
  const tls = path.join(dir, "tls");
  const poolerDir = path.join(dir, "pgbouncer");
  for (const d of [dir, data, tls, poolerDir]) {
    fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    chownToServer(d, ctx.user);
  }
  const certs = await makeCertificates(tls);
  for (const f of fs.readdirSync(tls)) {
    fs.chmodSync(path.join(tls, f), f.endsWith(".key") ? 0o600 : 0o644);
    chownToServer(path.join(tls, f), ctx.user);
  }
  const rootPassword = randomBytes(12).toString("hex");
  const adminPassword = randomBytes(12).toString("hex");
  const pwfile = path.join(dir, "root.pw");
  writeServerFile(ctx, pwfile, rootPassword);
  await run(bin(ctx, "initdb"), ["-D", data, "-U", ROOT_USER, `--pwfile=${pwfile}`, "--auth=scram-sha-256", "--data-checksums"], { as: ctx.user });
  fs.rmSync(pwfile);

  const port = await freePort();
  const settings = {
    ...serverSettings({ memoryBytes: 512 * MiB, cpus: 1 }, 0, { pgCron: { database: DATABASE } }),
    listen_addresses: HOST,
    port,
    unix_socket_directories: "",
    ssl: "on",
    ssl_cert_file: certs.cert,
    ssl_key_file: certs.key,
    ssl_min_protocol_version: "TLSv1.2",
  };
  fs.appendFileSync(path.join(data, "postgresql.conf"), "\n" + renderConf(settings));
  // TLS only (rds.force_ssl): no `host` line, so an unencrypted connection finds no rule and is refused.
  writeServerFile(ctx, path.join(data, "pg_hba.conf"), `hostssl all all ${HOST}/32 scram-sha-256\n`);
  await run(bin(ctx, "pg_ctl"), ["start", `--pgdata=${data}`, `--log=${path.join(dir, "postgres.log")}`, "--wait", "--timeout=120"], { as: ctx.user, timeoutMs: 130_000 });

  const url = (user: string, password: string, database: string = DATABASE) => connectionUrl(user, password, { host: HOST, port }, database, certs.ca);
  const rootUrl = url(ROOT_USER, rootPassword, "postgres");
  // What RDS sets up before the customer's first login: the master user (no superuser) owning the
  // database named at creation, and pg_cron in the database cron.database_name names.
  await sql(rootUrl, [
    `CREATE ROLE ${ADMIN_USER} LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD '${adminPassword}'`,
    `CREATE DATABASE ${DATABASE} OWNER ${ADMIN_USER}`,
  ]);
  await sql(url(ROOT_USER, rootPassword), ["CREATE EXTENSION pg_cron",
    `GRANT USAGE ON SCHEMA cron TO ${ADMIN_USER} WITH GRANT OPTION`,
    `GRANT ALL ON ALL FUNCTIONS IN SCHEMA cron TO ${ADMIN_USER} WITH GRANT OPTION`,
  ]);

  let poolerPort = 0;
  const pidFile = path.join(poolerDir, "pgbouncer.pid");
  const rdsLike: RdsLike = {
    dir,
    caFile: certs.ca,
    port,
    get poolerPort() {
      return poolerPort;
    },
    adminPassword,
    adminUrl: url(ADMIN_USER, adminPassword),
    rootUrl: url(ROOT_USER, rootPassword),
    url,
    viaPooler: (user, password) => connectionUrl(user, password, { host: HOST, port: poolerPort }, DATABASE, certs.ca),
    async startPooler(authUserPassword, pooled) {
      poolerPort = await freePort();
      const ini = renderPgbouncerIni({
        listenAddr: HOST,
        listenPort: poolerPort,
        serverHost: HOST,
        serverPort: port,
        database: DATABASE,
        authFile: path.join(poolerDir, "userlist.txt"),
        ...POOLER_DEFAULTS,
        secretsFrom: "auth_file",
        clientTls: { certFile: certs.cert, keyFile: certs.key },
        serverTls: { sslmode: "verify-full", caFile: certs.ca },
        logFile: path.join(poolerDir, "pgbouncer.log"),
        pidFile,
      });
      const verifiers = Object.fromEntries(Object.entries(pooled).map(([role, password]) => [role, stableScramVerifier(role, password)]));
      writeServerFile(ctx, path.join(poolerDir, "pgbouncer.ini"), ini);
      writeServerFile(ctx, path.join(poolerDir, "userlist.txt"), renderPgbouncerAuthFile(authUserPassword, verifiers));
      await run(ctx.bins.pgbouncer, ["-d", path.join(poolerDir, "pgbouncer.ini")], { as: ctx.user });
      await waitFor("the RDS-like pooler", 10_000, async () => (fs.existsSync(pidFile) ? true : undefined));
    },
    async stop() {
      if (fs.existsSync(pidFile)) {
        const pid = Number(fs.readFileSync(pidFile, "utf8"));
        process.kill(pid, "SIGTERM");
        await waitFor("pgbouncer to exit", 10_000, async () => (processAlive(pid, "pgbouncer") ? undefined : true));
      }
      await run(bin(ctx, "pg_ctl"), ["stop", `--pgdata=${data}`, "--mode=fast", "--wait", "--timeout=60"], { as: ctx.user, timeoutMs: 70_000 });
    },
  };
  return rdsLike;
}

/** Statements one by one, outside a transaction (CREATE DATABASE needs that). */
export async function sql(url: string, statements: readonly string[]): Promise<void> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    for (const s of statements) await c.query(s);
  } finally {
    await c.end();
  }
}
