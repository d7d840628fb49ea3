// The PgBouncer container as both platforms run it: the same image, paths and pgbouncer.ini (from the
// shared generator), pointed at the primary, its read-only entry at the replicas.
import { DATABASE } from "../../schema/roles";
import { PoolerConfig } from "../config";
import { renderPgbouncerIni } from "../topology/pgbouncerIni";
import { PoolerFootprint, poolerServerConnections } from "../topology/connectionBudget";
import { POOLED_LOGINS } from "./types";

/** The pooler of a platform with `processes` PgBouncer processes, serving the pooled logins. */
export function poolerFootprint(processes: number, pooler: PoolerConfig): PoolerFootprint {
  return { processes, pooledLogins: POOLED_LOGINS.length, defaultPoolSize: pooler.defaultPoolSize };
}

export const POOLER_PORT = 6432;
export const POOLER_CONFIG_DIR = "/etc/pgbouncer";
export const POOLER_INI_FILE = `${POOLER_CONFIG_DIR}/pgbouncer.ini`;
export const POOLER_AUTH_FILE = `${POOLER_CONFIG_DIR}/userlist.txt`;
/** TLS material inside the container: the CA that verifies the server, the pooler's own certificate and key. */
export const POOLER_SERVER_CA_FILE = `${POOLER_CONFIG_DIR}/server-ca.pem`;
export const POOLER_CERT_FILE = `${POOLER_CONFIG_DIR}/pooler.crt`;
export const POOLER_KEY_FILE = `${POOLER_CONFIG_DIR}/pooler.key`;

export interface PoolerServer {
  readonly host: string;
  readonly port: number;
  /** RDS forces TLS, verified against its CA bundle (POOLER_SERVER_CA_FILE); on a Docker network the server is next door. */
  readonly tls: boolean;
  /** The pooler presents POOLER_CERT_FILE and accepts TLS clients only. */
  readonly clientTls?: boolean;
  /** The replicas (on `port` too) the read-only entry spreads nb_readonly over; none: the primary. */
  readonly replicaHosts?: readonly string[];
}

export function containerPoolerIni(server: PoolerServer, pooler: PoolerConfig, secretsFrom: "auth_query" | "auth_file" = "auth_query"): string {
  return renderPgbouncerIni({
    maxDbConnections: poolerServerConnections(poolerFootprint(1, pooler)),
    listenAddr: "0.0.0.0",
    listenPort: POOLER_PORT,
    serverHost: server.host,
    serverPort: server.port,
    readonlyServers: { hosts: server.replicaHosts ?? [], port: server.port },
    database: DATABASE,
    authFile: POOLER_AUTH_FILE,
    ...pooler,
    ...(server.tls ? { serverTls: { sslmode: "verify-full" as const, caFile: POOLER_SERVER_CA_FILE } } : {}),
    ...(server.clientTls ? { clientTls: { certFile: POOLER_CERT_FILE, keyFile: POOLER_KEY_FILE } } : {}),
    secretsFrom,
  });
}

/** `pg_isready` against the pooler: any answer, even "no such user", means PgBouncer is serving. */
export const POOLER_HEALTHCHECK = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", String(POOLER_PORT)];
