// What a database holds of one bundle, read back for the SqlBundle provider's read and diff: the
// ledger's checksum, and which database that is. A database replaced under a stack (re-initialised,
// or dropped and created again) has another identity, so its bundles are applied again instead of
// being taken as applied.
import { Client } from "pg";
import { readLedger } from "./ledger";

/**
 * The identity of the database a connection reaches: the cluster's system identifier (new at every
 * initdb) and the database's OID (new at every CREATE DATABASE). pg_control_system() is executable
 * by every role, so nb_migrator and the administrator can both read it.
 */
export const DATABASE_IDENTITY_SQL =
  "SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text || ':' || d.oid::text AS identity " +
  "FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";

export interface DeployedBundle {
  /** DATABASE_IDENTITY_SQL's answer. */
  readonly database: string;
  /** The checksum the ledger holds for the bundle; undefined when the ledger does not hold it. */
  readonly checksum: string | undefined;
}

export async function deployedBundle(url: string, bundleName: string): Promise<DeployedBundle> {
  const client = new Client({ connectionString: url, application_name: "nbdb-deploy-read" });
  await client.connect();
  try {
    const identity = await client.query<{ identity: string }>(DATABASE_IDENTITY_SQL);
    const ledger = await readLedger(client);
    return { database: identity.rows[0].identity, checksum: ledger.get(bundleName)?.checksum };
  } finally {
    await client.end().catch(() => undefined);
  }
}
