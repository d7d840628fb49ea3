// The PgBouncer container as both platforms run it: the same image, paths and pgbouncer.ini (from the
// shared generator), pointed at the primary.
import { DATABASE } from "../../schema/roles";
import { PoolerConfig } from "../config";
import { PgbouncerConfig, renderPgbouncerIni } from "../topology/pgbouncerIni";

export const POOLER_PORT = 6432;
export const POOLER_CONFIG_DIR = "/etc/pgbouncer";
export const POOLER_INI_FILE = `${POOLER_CONFIG_DIR}/pgbouncer.ini`;
export const POOLER_AUTH_FILE = `${POOLER_CONFIG_DIR}/userlist.txt`;

export interface PoolerServer {
  readonly host: string;
  readonly port: number;
  /** TLS to the server. */
  readonly tls: boolean;
  /** The CA (a path in the container) the server's certificate is verified with (verify-full); without it, TLS is unverified (require). */
  readonly caFile?: string;
}

export function containerPoolerIni(
  server: PoolerServer,
  pooler: PoolerConfig,
  secretsFrom: "auth_query" | "auth_file" = "auth_query",
  clientTls?: PgbouncerConfig["clientTls"],
): string {
  return renderPgbouncerIni({
    listenAddr: "0.0.0.0",
    listenPort: POOLER_PORT,
    serverHost: server.host,
    serverPort: server.port,
    database: DATABASE,
    authFile: POOLER_AUTH_FILE,
    ...pooler,
    ...(server.tls ? { serverTls: server.caFile ? { sslmode: "verify-full" as const, caFile: server.caFile } : { sslmode: "require" as const, caFile: "" } } : {}),
    ...(clientTls ? { clientTls } : {}),
    secretsFrom,
  });
}

/** `pg_isready` against the pooler: any answer, even "no such user", means PgBouncer is serving. */
export const POOLER_HEALTHCHECK = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", String(POOLER_PORT)];
