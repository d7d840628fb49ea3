// The shape of a stack's outputs: `.nbdb/<stack>/outputs.json` for the local stack, the exported
// outputs of the Pulumi program for deployed stacks (docs/contracts.md, "Outputs").

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
  /**
   * The CAs the URLs verify against (the URLs name their files too): a local stack's one CA
   * (`caFile`); a Pulumi stack's `tls` output, its servers' and its pooler's, files and PEM
   * (infra/outputs.ts).
   */
  tls?: { caFile?: string; serverCaFile?: string; serverCa?: string; poolerCaFile?: string; poolerCa?: string };
}

/**
 * A postgresql:// URL to the database of a stack. With `caFile` (a path), TLS with `verify-full`:
 * the server's certificate must chain to that CA and name the host; libpq and node-postgres read
 * both parameters the same way (never `sslmode=require`, which pg-connection-string 2.x reads as
 * verify-full against Node's own CA store, and libpq as no verification at all).
 */
export function connectionUrl(user: string, password: string, at: Endpoint, database: string, caFile?: string): string {
  const tls = caFile === undefined ? "" : `?sslmode=verify-full&sslrootcert=${queryValue(caFile)}`;
  return `postgresql://${user}:${encodeURIComponent(password)}@${at.host}:${at.port}/${database}${tls}`;
}

/** A query-string value: percent-encoded, but a path's slashes kept readable (both parsers decode it). */
function queryValue(v: string): string {
  return encodeURIComponent(v).replace(/%2F/gi, "/");
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

/**
 * The pooler's read-only entry: nb_readonly's reads spread over every replica (PgBouncer's host
 * list, round-robin per new server connection), the primary when the stack has no replica.
 */
export function readonlyPoolDatabase(database: string): string {
  return `${database}_readonly`;
}

/** What routing needs of a stack: where its primary and pooler are, the logins' passwords, the CAs. */
export interface RoutingInputs {
  readonly database: string;
  readonly primary: Endpoint;
  readonly pooler: Endpoint;
  readonly passwords: { readonly nb_app: string; readonly nb_readonly: string; readonly nb_auditor: string; readonly nb_migrator: string };
  /** The CA the pooler's certificate chains to, where it speaks TLS. */
  readonly poolerCaFile?: string;
  /** The CA of the servers' certificates, where they speak TLS. */
  readonly serverCaFile?: string;
}

/**
 * Which role connects where, for every platform (docs/contracts.md, "Outputs"): the application and
 * the auditor through the pooler's transaction pool, reporting reads through its read-only entry
 * (over the replicas), the migrator straight to the primary (bundles need a session).
 */
export function stackConnections(r: RoutingInputs): { app: string; readonly: string; auditor: string; migrator: string } {
  return {
    app: connectionUrl("nb_app", r.passwords.nb_app, r.pooler, r.database, r.poolerCaFile),
    readonly: connectionUrl("nb_readonly", r.passwords.nb_readonly, r.pooler, readonlyPoolDatabase(r.database), r.poolerCaFile),
    auditor: connectionUrl("nb_auditor", r.passwords.nb_auditor, r.pooler, r.database, r.poolerCaFile),
    migrator: connectionUrl("nb_migrator", r.passwords.nb_migrator, r.primary, r.database, r.serverCaFile),
  };
}
