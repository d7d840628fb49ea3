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
}

/** A postgresql:// URL to the database of a stack; `sslMode` other than "disable" is asked for in the URL. */
export function connectionUrl(user: string, password: string, at: Endpoint, database: string, sslMode: "disable" | "require" = "disable"): string {
  const tls = sslMode === "disable" ? "" : `?sslmode=${sslMode}`;
  return `postgresql://${user}:${encodeURIComponent(password)}@${at.host}:${at.port}/${database}${tls}`;
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
