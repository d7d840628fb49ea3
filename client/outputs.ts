// The shape of a stack's outputs: `.nbdb/<stack>/outputs.json` for the local stack, the exported
// outputs of the Pulumi program for deployed stacks (DESIGN.md, "Contracts").

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface StackOutputs {
  stack: string;
  database: string;
  primary: Endpoint;
  replicas: Endpoint[];
  pooler: Endpoint & { poolMode: "transaction" | "session" };
  connections: {
    app: string;
    readonly: string;
    auditor: string;
    migrator: string;
    /** The local stack only. */
    admin?: string;
  };
  /** The CA certificate that signed the servers' and the pooler's certificates (the URLs name it too). */
  tls?: { caFile: string };
}

/**
 * How a connection URL asks for TLS. `verify-full` checks the server's certificate and its name; with
 * `rootCert` (a file path) against that CA alone, else against the system's CAs. node-postgres
 * (pg-connection-string 2.x) and libpq (psql) read these URLs alike for verify-full; `require`
 * means verify-full to node-postgres but no verification to libpq, so the stacks' outputs use
 * verify-full.
 */
export interface UrlTls {
  readonly sslMode: "verify-full" | "require" | "disable";
  readonly rootCert?: string;
}

/** A query-string value: percent-encoded, but a path's slashes kept readable (both parsers decode it). */
function queryValue(v: string): string {
  return encodeURIComponent(v).replace(/%2F/gi, "/");
}

/** A postgresql:// URL to the database of a stack, asking for TLS as `tls` says. */
export function connectionUrl(user: string, password: string, at: Endpoint, database: string, tls: UrlTls): string {
  const params = tls.sslMode === "disable" ? [] : [`sslmode=${tls.sslMode}`, ...(tls.rootCert ? [`sslrootcert=${queryValue(tls.rootCert)}`] : [])];
  return `postgresql://${user}:${encodeURIComponent(password)}@${at.host}:${at.port}/${database}${params.length ? `?${params.join("&")}` : ""}`;
}

/**
 * The pooler's session-mode entry: the same database under another name, for what needs a session
 * of its own (LISTEN). Every other use goes through the transaction pool.
 */
export function sessionPoolDatabase(database: string): string {
  return `${database}_session`;
}

/** Server connections the session-mode entry may hold per role (each listener keeps one). */
export const SESSION_POOL_SIZE = 10;
