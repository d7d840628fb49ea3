// AdminSql: idempotent SQL run once, in one transaction, as the platform's administrator (the
// superuser on Docker, the RDS master user on AWS), for what neither @pulumi/postgresql nor the
// bundles (which run as nb_owner) can do: take over a database the platform created, or install a
// SECURITY DEFINER function that must belong to the administrator.
//
// Like SqlBundle, the provider is a serialized closure run by the Pulumi engine: it captures one
// plain string, the absolute path of the pg module, and requires it inside each method.
import * as pulumi from "@pulumi/pulumi";

export interface AdminSqlInputs {
  readonly sql: string;
  /** postgresql:// URL of the primary as the administrator (or `runAs`); stored as a secret. */
  readonly connection: string;
  /** Who the connection logs in as, for messages: "its administrator" unless given (e.g. nb_migrator for the pg_cron schedule). */
  readonly runAs?: string;
}

/** What the state keeps: the checksum of the SQL, never the connection. */
export interface AdminSqlOutputs {
  readonly checksum: string;
}

const PG_MODULE = require.resolve("pg");

export function adminSqlProvider(pgModule: string = PG_MODULE): pulumi.dynamic.ResourceProvider {
  const checksumOf = (sql: string): string => require("crypto").createHash("sha256").update(sql, "utf8").digest("hex");
  const run = async (inputs: AdminSqlInputs): Promise<AdminSqlOutputs> => {
    const { Client } = require(pgModule) as typeof import("pg");
    const client = new Client({ connectionString: inputs.connection, application_name: "nbdb-admin" });
    await client.connect().catch((e: Error) => {
      throw new Error(`cannot connect to the primary as ${inputs.runAs ?? "its administrator"}: ${e.message}. Check that the primary is up and reachable from where pulumi up runs (directly, not through PgBouncer).`);
    });
    try {
      await client.query("BEGIN");
      await client.query(inputs.sql);
      await client.query("COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      const hint = (e as { hint?: string }).hint;
      throw new Error(`SQL as ${inputs.runAs ?? "the administrator"} failed and was rolled back: ${(e as Error).message}.${hint ? ` ${hint}` : ""} Fix the cause and run pulumi up again.`);
    } finally {
      await client.end().catch(() => undefined);
    }
    return { checksum: checksumOf(inputs.sql) };
  };

  return {
    async create(inputs: AdminSqlInputs): Promise<pulumi.dynamic.CreateResult> {
      return { id: checksumOf(inputs.sql).slice(0, 16), outs: await run(inputs) };
    },

    // A new connection string (a rotated password, another address) is no reason to run it again.
    async diff(_id: pulumi.ID, olds: AdminSqlOutputs, news: AdminSqlInputs): Promise<pulumi.dynamic.DiffResult> {
      return { changes: olds.checksum !== checksumOf(news.sql) };
    },

    async update(_id: pulumi.ID, _olds: AdminSqlOutputs, news: AdminSqlInputs): Promise<pulumi.dynamic.UpdateResult> {
      return { outs: await run(news) };
    },

    // What it did belongs to the database, which goes with its server.
    async delete(): Promise<void> {},
  };
}

export interface AdminSqlArgs {
  /** A secret where it carries password verifiers. */
  readonly sql: pulumi.Input<string>;
  readonly connection: pulumi.Input<string>;
  readonly runAs?: string;
}

const provider = adminSqlProvider();

export class AdminSql extends pulumi.dynamic.Resource {
  constructor(name: string, args: AdminSqlArgs, opts?: pulumi.CustomResourceOptions) {
    const inputs: Record<keyof AdminSqlInputs, pulumi.Input<string> | undefined> = { sql: args.sql, connection: pulumi.secret(args.connection), runAs: args.runAs };
    super(provider, name, inputs, opts, "neuralblitz", "AdminSql");
  }
}
