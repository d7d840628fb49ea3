// ReplicationSlot: the physical slot a Docker replica streams through (its bootstrap creates it on
// the primary). The resource exists so that removing the replica removes the slot too: without it a
// removed replica's slot holds WAL on the primary up to max_slot_wal_keep_size, forever. The replica
// container depends on it, so Pulumi deletes the container first and then drops the slot (ending the
// walsender of a replica that is still shutting down). Like AdminSql, the provider is a closure over
// plain strings that requires pg inside each method.
import * as pulumi from "@pulumi/pulumi";

export interface ReplicationSlotInputs {
  readonly slotName: string;
  /** postgresql:// URL of the primary as its administrator; kept (as a secret) for the delete. */
  readonly connection: string;
}

const PG_MODULE = require.resolve("pg");

export function replicationSlotProvider(pgModule: string = PG_MODULE): pulumi.dynamic.ResourceProvider {
  return {
    // The replica's bootstrap creates the slot (before its base backup): nothing to do yet.
    async create(inputs: ReplicationSlotInputs): Promise<pulumi.dynamic.CreateResult> {
      return { id: inputs.slotName, outs: inputs };
    },

    async diff(_id: pulumi.ID, olds: ReplicationSlotInputs, news: ReplicationSlotInputs): Promise<pulumi.dynamic.DiffResult> {
      return { changes: olds.slotName !== news.slotName || olds.connection !== news.connection, replaces: olds.slotName !== news.slotName ? ["slotName"] : [] };
    },

    async update(_id: pulumi.ID, _olds: ReplicationSlotInputs, news: ReplicationSlotInputs): Promise<pulumi.dynamic.UpdateResult> {
      return { outs: news };
    },

    async delete(_id: pulumi.ID, props: ReplicationSlotInputs): Promise<void> {
      const { Client } = require(pgModule) as typeof import("pg");
      const client = new Client({ connectionString: props.connection, application_name: "nbdb-slot" });
      await client.connect().catch((e: Error) => {
        throw new Error(
          `cannot connect to the primary to drop replication slot ${props.slotName}: ${e.message}. Start the primary and run pulumi up (or destroy) again; ` +
            `to leave the slot behind instead, pulumi state delete this resource and drop it later with SELECT pg_drop_replication_slot('${props.slotName}').`,
        );
      });
      try {
        // A walsender of the replica that is still going holds the slot: end it, then drop the slot.
        for (let attempt = 0; ; attempt++) {
          const { rows } = await client.query("SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", [props.slotName]);
          if (rows.length === 0) return;
          if (rows[0].active_pid !== null) await client.query("SELECT pg_catalog.pg_terminate_backend($1, 5000)", [rows[0].active_pid]);
          try {
            await client.query("SELECT pg_catalog.pg_drop_replication_slot($1)", [props.slotName]);
            return;
          } catch (e) {
            if (attempt >= 10 || (e as { code?: string }).code !== "55006") throw e;
          }
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
}

const provider = replicationSlotProvider();

export class ReplicationSlot extends pulumi.dynamic.Resource {
  constructor(name: string, args: { readonly slotName: string; readonly connection: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
    super(provider, name, { slotName: args.slotName, connection: pulumi.secret(args.connection) }, { ...opts, additionalSecretOutputs: ["connection"] }, "neuralblitz", "ReplicationSlot");
  }
}
