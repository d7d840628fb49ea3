// pgbouncer.ini and its auth file, written once for every platform: the local stack runs them for
// real, the Docker and AWS stacks mount them into the PgBouncer container.
import { SESSION_POOL_SIZE, readonlyPoolDatabase, sessionPoolDatabase } from "../../client/outputs";
import { RESERVE_POOL_SIZE } from "./connectionBudget";
import { MONITOR_ROLE } from "./monitoring";
import { AUTH_QUERY, AUTH_USER } from "./pgbouncerAuth";

/** Statement pooling is left out: the user context lives in a transaction (SET LOCAL). */
export type PoolMode = "transaction" | "session";

export interface PgbouncerConfig {
  /** Address and port clients connect to. */
  readonly listenAddr: string;
  readonly listenPort: number;
  /** The primary the pool connects to (never a replica: the pool takes writes). */
  readonly serverHost: string;
  readonly serverPort: number;
  /**
   * The replicas the read-only entry spreads nb_readonly over, all on one port: PgBouncer 1.24's host
   * list takes one port for every host (`port=a,b` is read as `a`). Absent or empty: the primary.
   */
  readonly readonlyServers?: { readonly hosts: readonly string[]; readonly port: number };
  readonly database: string;
  readonly authFile: string;
  readonly poolMode: PoolMode;
  readonly maxClientConnections: number;
  readonly defaultPoolSize: number;
  /** max_db_connections: this process's share of the servers' connection budget (connectionBudget.ts). */
  readonly maxDbConnections?: number;
  /** Absent where the container's stdout is the log (Docker, ECS). */
  readonly logFile?: string;
  readonly pidFile?: string;
  /** Client side: PgBouncer presents this certificate and refuses clients without TLS. */
  readonly clientTls?: { readonly certFile: string; readonly keyFile: string };
  /**
   * Pooler to server: `verify-full` checks the server's certificate against `caFile` and its name
   * against serverHost. `require` (encrypted, unverified) writes no CA line when `caFile` is "".
   */
  readonly serverTls?: { readonly sslmode: "verify-full" | "require"; readonly caFile: string };
  /**
   * Where clients' SCRAM secrets come from: "auth_query" asks the server (pgbouncer.get_auth, which
   * reads pg_authid); "auth_file" reads them from the auth file, for servers where no role may read
   * pg_authid (RDS).
   */
  readonly secretsFrom?: "auth_query" | "auth_file";
  /**
   * admin_users: logins that may PAUSE, RESUME and RECONNECT (the local stack's switchover holds
   * clients on their pooler connections while the primary changes). Absent: none, SHOW only.
   */
  readonly adminUsers?: readonly string[];
}

export const POOLER_DEFAULTS = {
  poolMode: "transaction" as PoolMode,
  // 1,000 application clients (the benchmark's figure) plus room for the auditor and the admin console.
  maxClientConnections: 1100,
  defaultPoolSize: 20,
};

/**
 * Owned by the pooled-session design (docs/security.md): nothing a client leaves on a server
 * connection reaches the next client, and no failure or idle client makes others wait unbounded.
 */
export const POOLER_FAILURE_SETTINGS = {
  /** Seconds before a failed server login is retried; meanwhile new clients are refused (default 15). */
  serverLoginRetry: 1,
  /** Seconds a client may wait for a server connection before it gets an error (default 120). */
  queryWaitTimeout: 15,
  /** Seconds a client may sit idle inside a transaction before the pooler closes it (default off). */
  idleTransactionTimeout: 10,
  /** Seconds a client has to finish logging in (default 60). */
  clientLoginTimeout: 15,
} as const;

/**
 * Run on every server connection a client gives back: DISCARD ALL without its two parts that would
 * throw away what is safe to keep. Kept: cached plans (DISCARD PLANS; a plan is correct for any
 * client, and PostgreSQL re-plans on a role or row_security change) and protocol-level prepared
 * statements (PgBouncer 1.22+ tracks those it prepared on the connection and maps each client's
 * names to them, so no client can reach another's). Removed: every session setting, role and
 * session authorization, SQL PREPAREs (pg_prepared_statements.from_sql), LISTENs, session
 * advisory locks, temporary tables, sequence state and open cursors.
 */
export const SESSION_RESET_SQL = [
  "CLOSE ALL",
  "SET SESSION AUTHORIZATION DEFAULT",
  "RESET ROLE",
  "RESET ALL",
  "UNLISTEN *",
  "SELECT pg_catalog.pg_advisory_unlock_all()",
  "DISCARD TEMP",
  "DISCARD SEQUENCES",
  "DO $$DECLARE n text; BEGIN FOR n IN SELECT name FROM pg_catalog.pg_prepared_statements WHERE from_sql LOOP EXECUTE pg_catalog.format('DEALLOCATE %I', n); END LOOP; END$$",
].join("; ");

const SESSION_STATE_AND_TIMEOUTS = [
  "; session state and timeouts",
  // Every server connection is reset when a client's transaction (or session) gives it back, in every
  // pool mode: whatever a client SETs at session level (any GUC, search_path, statement_timeout,
  // default_transaction_read_only, row_security, role), PREPAREs, LISTENs, advisory locks, temp tables,
  // open cursors, is gone before another client gets the connection.
  `server_reset_query = ${SESSION_RESET_SQL}`,
  "server_reset_query_always = 1",
  // A short primary outage: clients are refused for at most this long after the server is back.
  `server_login_retry = ${POOLER_FAILURE_SETTINGS.serverLoginRetry}`,
  // A transaction left idle is ended by the pooler, so idle holders cannot starve the pool; a client
  // waiting for a connection gets an error after query_wait_timeout instead of hanging (it is longer
  // than idle_transaction_timeout, so a pool held by idle clients frees up before waiters give up).
  `idle_transaction_timeout = ${POOLER_FAILURE_SETTINGS.idleTransactionTimeout}`,
  `query_wait_timeout = ${POOLER_FAILURE_SETTINGS.queryWaitTimeout}`,
  // Sockets that never finish logging in (no credentials) lose their slot after this long.
  `client_login_timeout = ${POOLER_FAILURE_SETTINGS.clientLoginTimeout}`,
];

/**
 * Drivers' prepared statements and startup parameters (PgBouncer 1.24; docs/pooler.md has the
 * reasons in full):
 * - Protocol-level named prepared statements (pgJDBC, psycopg 3, asyncpg, postgres.js, node-postgres
 *   with `name`) are tracked per client and prepared on whichever server connection serves it.
 * - Tracked (set on the server connection for each client): only what PostgreSQL reports back
 *   (ParameterStatus), so PgBouncer knows the server's value: the built-in client_encoding,
 *   DateStyle, TimeZone, standard_conforming_strings, application_name, and IntervalStyle.
 * - Ignored (accepted, not applied; the role's settings in schema/roles.ts stay in force):
 *   extra_float_digits (since PostgreSQL 12 every value above 0 gives the same, exact output) and
 *   the timeouts, which PostgreSQL 15 does not report, so PgBouncer 1.24 cannot track them: a
 *   tracked one would stay on the server connection for the next client.
 * - Refused (the client gets "unsupported startup parameter"): everything else, search_path
 *   above all. PostgreSQL 15 does not report it either, so tracking it leaks one client's
 *   search_path to the next, and ignoring it would run unqualified names against another schema.
 *   `options` is parsed by 1.24, each `-c name=value` in it judged like a parameter of its own.
 */
export const PREPARED_STATEMENTS_AND_STARTUP_PARAMETERS = [
  "; prepared statements and startup parameters",
  "max_prepared_statements = 200",
  "track_extra_parameters = IntervalStyle",
  "ignore_startup_parameters = extra_float_digits, statement_timeout, lock_timeout, idle_in_transaction_session_timeout",
] as const;

/** The database line's auth_user (never a global one: PgBouncer issue #798), where secrets come from auth_query. */
function authUserOf(c: PgbouncerConfig): string {
  return c.secretsFrom === "auth_file" ? "" : ` auth_user=${AUTH_USER}`;
}

function readonlyEntry(c: PgbouncerConfig): string {
  const replicas = c.readonlyServers && c.readonlyServers.hosts.length > 0 ? c.readonlyServers : undefined;
  for (const h of replicas?.hosts ?? []) {
    if (!h || /[\s,]/.test(h)) throw new Error(`pgbouncer.ini: replica host '${h}' cannot go into a host list (empty, or holds a comma or a space)`);
  }
  const target = replicas ? `host=${replicas.hosts.join(",")} port=${replicas.port} load_balance_hosts=round-robin` : `host=${c.serverHost} port=${c.serverPort}`;
  return `${readonlyPoolDatabase(c.database)} = ${target} dbname=${c.database}${authUserOf(c)}`;
}

export function renderPgbouncerIni(c: PgbouncerConfig): string {
  const lines = [
    "; Generated by neuralblitz-db (infra/topology/pgbouncerIni.ts). Do not edit by hand.",
    "[databases]",
    // auth_user on the database, never global: with a global one, a login for an unknown user to the
    // admin database `pgbouncer` waits forever for an auth_query that has no server to run on, and
    // keeps its client slot (PgBouncer issue #798; 1,100 such sockets locked the pooler).
    `${c.database} = host=${c.serverHost} port=${c.serverPort} dbname=${c.database}${authUserOf(c)}`,
    // LISTEN needs a session: the same database in session mode, a few connections (client listen()).
    `${sessionPoolDatabase(c.database)} = host=${c.serverHost} port=${c.serverPort} dbname=${c.database} pool_mode=session pool_size=${SESSION_POOL_SIZE}${authUserOf(c)}`,
    // Reporting reads: each new server connection goes to the next replica of the list (round-robin);
    // the auth_query runs there too (a read-only lookup, fine on a hot standby).
    readonlyEntry(c),
    "",
    "[pgbouncer]",
    `listen_addr = ${c.listenAddr}`,
    `listen_port = ${c.listenPort}`,
    // TCP only: a Unix socket in a shared directory would clash between stacks.
    "unix_socket_dir =",
    // Clients authenticate with SCRAM; PgBouncer passes their proof through to the server.
    "auth_type = scram-sha-256",
    `auth_file = ${c.authFile}`,
    ...(c.secretsFrom === "auth_file" ? [] : [`auth_query = ${AUTH_QUERY}`]),
    `pool_mode = ${c.poolMode}`,
    `max_client_conn = ${c.maxClientConnections}`,
    `default_pool_size = ${c.defaultPoolSize}`,
    "min_pool_size = 0",
    `reserve_pool_size = ${RESERVE_POOL_SIZE}`,
    ...(c.maxDbConnections !== undefined ? [`max_db_connections = ${c.maxDbConnections}`] : []),
    "server_lifetime = 3600",
    "server_idle_timeout = 600",
    "server_check_query = select 1",
    // Read-only console logins (every SHOW but SHOW FDS; no PAUSE, RELOAD, SHUTDOWN...): the auth user
    // (nbdb status) and the metrics exporter's login, whose SCRAM verifier the platforms' auth files hold.
    `stats_users = ${AUTH_USER}, ${MONITOR_ROLE}`,
    ...(c.adminUsers?.length ? [`admin_users = ${c.adminUsers.join(", ")}`] : []),
    "log_connections = 0",
    "log_disconnections = 0",
    ...SESSION_STATE_AND_TIMEOUTS,
    ...PREPARED_STATEMENTS_AND_STARTUP_PARAMETERS,
  ];
  if (c.clientTls || c.serverTls) lines.push("; TLS", ...tlsLines(c));
  if (c.logFile) lines.push(`logfile = ${c.logFile}`);
  if (c.pidFile) lines.push(`pidfile = ${c.pidFile}`);
  return lines.join("\n") + "\n";
}

function tlsLines(c: PgbouncerConfig): string[] {
  const lines: string[] = [];
  if (c.clientTls) {
    lines.push("client_tls_sslmode = require", `client_tls_cert_file = ${c.clientTls.certFile}`, `client_tls_key_file = ${c.clientTls.keyFile}`);
    lines.push("client_tls_protocols = tlsv1.2,tlsv1.3");
  }
  if (c.serverTls) {
    if (c.serverTls.sslmode === "verify-full" && !c.serverTls.caFile) throw new Error("pgbouncer.ini: server_tls_sslmode = verify-full needs the CA file that signed the server's certificate");
    lines.push(`server_tls_sslmode = ${c.serverTls.sslmode}`);
    if (c.serverTls.caFile) lines.push(`server_tls_ca_file = ${c.serverTls.caFile}`);
    lines.push("server_tls_protocols = tlsv1.2,tlsv1.3");
  }
  return lines;
}

function authLine(user: string, secret: string): string {
  return `"${user}" "${secret.replace(/"/g, '""')}"\n`;
}

/**
 * The auth file: the auth user with its plain password (PgBouncer needs it to log in as the auth
 * user and the stats user; with only a SCRAM secret it cannot). With auth_query, that is all: every
 * other login's secret comes from the server, so no other password is ever written to the
 * pooler's files. Without it (RDS), the logins served through the pooler are listed with their
 * SCRAM verifiers, never their passwords; PgBouncer passes the client's proof through to the server.
 */
export function renderPgbouncerAuthFile(authUserPassword: string, scramVerifiers: Readonly<Record<string, string>> = {}): string {
  return authLine(AUTH_USER, authUserPassword) + Object.entries(scramVerifiers).map(([user, verifier]) => authLine(user, verifier)).join("");
}
