// `.nbdb/<stack>/pg_service.conf`: one libpq service per connection of a stack's outputs, so any
// libpq client reaches the stack by name (`PGSERVICEFILE=.nbdb/local/pg_service.conf psql
// service=nbdb-local-app`). The entries are derived from the outputs' URLs, carrying every URL
// parameter (sslmode, sslrootcert, ...), so whatever outputs.json says is what the service says.
import * as path from "path";
import { StackOutputs } from "../../client/outputs";
import { stackDir, writePrivate } from "./state";

/** The connections of the outputs, in their order, that get a service. */
const SERVICES = ["app", "migrator", "readonly", "auditor", "admin"] as const;

export function serviceName(stack: string, connection: (typeof SERVICES)[number]): string {
  return `nbdb-${stack}-${connection}`;
}

export function pgServiceFile(stack: string): string {
  return path.join(stackDir(stack), "pg_service.conf");
}

// Parameters node-postgres reads that are no libpq keyword (libpq refuses the whole service file
// for one). `uselibpqcompat=true` asks node-postgres for libpq's meaning of sslmode, which libpq has.
const NODE_POSTGRES_ONLY = new Set(["uselibpqcompat"]);

/**
 * libpq's keywords for a postgresql:// URL: host, port, dbname, user, password, then every query
 * parameter as it is (they are libpq keywords already: sslmode, sslrootcert, target_session_attrs...),
 * but for node-postgres's own.
 */
export function libpqKeywords(url: string): [string, string][] {
  const u = new URL(url);
  if (u.protocol !== "postgresql:" && u.protocol !== "postgres:") throw new Error(`not a postgresql:// URL: ${u.protocol}//${u.host}`);
  const keywords: [string, string][] = [];
  const add = (key: string, value: string) => {
    // A service file holds one key=value per line, unquoted: a line break would start another entry.
    if (/[\r\n]/.test(value)) throw new Error(`the connection's ${key} holds a line break, which a pg_service.conf entry cannot carry`);
    if (value !== "") keywords.push([key, value]);
  };
  add("host", u.hostname.replace(/^\[(.*)\]$/, "$1"));
  add("port", u.port);
  add("dbname", decodeURIComponent(u.pathname.replace(/^\//, "")));
  add("user", decodeURIComponent(u.username));
  add("password", decodeURIComponent(u.password));
  for (const [key, value] of u.searchParams) if (!NODE_POSTGRES_ONLY.has(key)) add(key, value);
  return keywords;
}

/** The text of the stack's service file. */
export function renderPgServiceConf(outputs: StackOutputs): string {
  const lines = [
    `# libpq services of nbdb stack '${outputs.stack}', written by nbdb up from outputs.json (mode 0600: it holds passwords).`,
    `# Use: PGSERVICEFILE=${pgServiceFile(outputs.stack)} psql service=${serviceName(outputs.stack, "app")}`,
  ];
  for (const connection of SERVICES) {
    const url = outputs.connections[connection];
    if (url === undefined) continue;
    lines.push("", `[${serviceName(outputs.stack, connection)}]`, ...libpqKeywords(url).map(([k, v]) => `${k}=${v}`));
  }
  return lines.join("\n") + "\n";
}

/** Write (or leave, when unchanged) the stack's service file; true when it was written. */
export function writePgServiceConf(outputs: StackOutputs): boolean {
  return writePrivate(pgServiceFile(outputs.stack), renderPgServiceConf(outputs));
}
