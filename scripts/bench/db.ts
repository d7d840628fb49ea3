// Connections the bench makes: one-off clients, and the same login pointed at another node.
import { Client } from "pg";
import { withClient as connectOnce } from "../db";

export function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  return connectOnce(url, fn, "nbdb-bench");
}

/**
 * A client of nb_migrator acting as nb_owner, for what the bench writes into the project's tables:
 * their triggers and functions are nb_owner's code, which must never run as a superuser.
 */
export async function withOwner<T>(migratorUrl: string, fn: (c: Client) => Promise<T>): Promise<T> {
  return withClient(migratorUrl, async (c) => {
    await c.query("SET ROLE nb_owner");
    return fn(c);
  });
}

/** The same login and database on another port (e.g. nb_app straight to the primary instead of the pooler). */
export function atPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

/** libpq environment for a connection string, so passwords never appear on a command line. */
export function libpqEnv(url: string): NodeJS.ProcessEnv {
  const u = new URL(url);
  return {
    PGHOST: u.hostname,
    PGPORT: u.port,
    PGUSER: decodeURIComponent(u.username),
    PGPASSWORD: decodeURIComponent(u.password),
    PGDATABASE: u.pathname.replace(/^\//, ""),
    // The URL's TLS too: libpq's default (prefer) would encrypt without verifying.
    ...(u.searchParams.get("sslmode") ? { PGSSLMODE: u.searchParams.get("sslmode")! } : {}),
    ...(u.searchParams.get("sslrootcert") ? { PGSSLROOTCERT: u.searchParams.get("sslrootcert")! } : {}),
  };
}
