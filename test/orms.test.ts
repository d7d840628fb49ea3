// The Node ORMs and query builders of docs/application.md through the real pooler, with the
// pattern the guide gives: knex, kysely and Sequelize name the user in each transaction and see only
// that user's rows, 4 transactions at once; Sequelize without `{ transaction }` updates nothing.
import { expect } from "chai";
import { randomUUID } from "crypto";
import knexFactory, { Knex } from "knex";
import { Kysely, PostgresDialect, sql } from "kysely";
import { Pool } from "pg";
import { DataTypes, Model, Sequelize } from "sequelize";
import { NeuralBlitzDb } from "../client";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, readDataKey } from "../scripts/local/state";
import { uniqueStack } from "./helpers";

const HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
const WORKERS = 4;
const ROUNDS = 10;

interface Fixture {
  id: string;
  neurons: string[];
}

describe("ORMs and query builders through the pooler (docs/application.md)", function () {
  const stack = uniqueStack("orms");
  let out: LocalStackOutputs;
  const users: Fixture[] = [];

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    const db = new NeuralBlitzDb({ outputs: out, dataKey: readDataKey(stack), max: 2 });
    try {
      for (let i = 0; i < WORKERS; i++) {
        const id = randomUUID();
        const neurons = await db.withUser(id, async (tx) => {
          await tx.query(
            `INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash, status)
             VALUES ($1, $2, neuralblitz.encrypt_secret($3), neuralblitz.lookup_hash($3), $4, 'active')`,
            [id, `orm${i}`, `orm${i}@example.com`, HASH],
          );
          const ids: string[] = [];
          for (let j = 0; j < 2; j++) ids.push((await tx.query("INSERT INTO neuralblitz.quantum_neurons (user_id, label) VALUES ($1, $2) RETURNING id::text AS id", [id, `orm${i}-${j}`])).rows[0].id);
          return ids;
        });
        users.push({ id, neurons });
      }
    } finally {
      await db.close();
    }
  });

  /** Every worker, round after round, its own user: what each saw and how many rows each update changed. */
  async function concurrently(tx: (user: Fixture, round: number) => Promise<{ owners: string[]; updated: number }>): Promise<void> {
    await Promise.all(
      users.map(async (user) => {
        for (let round = 0; round < ROUNDS; round++) {
          const { owners, updated } = await tx(user, round);
          expect(owners, "rows seen in the transaction").to.deep.equal(user.neurons.map(() => user.id));
          expect(updated, "rows the UPDATE changed").to.equal(1);
        }
      }),
    );
  }

  it("knex: trx.raw(set_user_context) first, every query on trx", async function () {
    const knex: Knex = knexFactory({ client: "pg", connection: out.connections.app, pool: { min: 0, max: WORKERS } });
    try {
      await concurrently((user, round) =>
        knex.transaction(async (trx) => {
          await trx.raw("SELECT neuralblitz.set_user_context(?::uuid, NULL)", [user.id]);
          const rows = await trx("neuralblitz.quantum_neurons").select("user_id").orderBy("label");
          const updated = await trx("neuralblitz.quantum_neurons").where({ id: user.neurons[0] }).update({ coherence: round / 100 });
          return { owners: rows.map((r: { user_id: string }) => r.user_id), updated };
        }),
      );
    } finally {
      await knex.destroy();
    }
  });

  it("kysely: sql`set_user_context` executed on the transaction first", async function () {
    interface Db {
      "neuralblitz.quantum_neurons": { id: string; user_id: string; label: string; coherence: number };
    }
    const db = new Kysely<Db>({ dialect: new PostgresDialect({ pool: new Pool({ connectionString: out.connections.app, max: WORKERS }) }) });
    try {
      await concurrently((user, round) =>
        db.transaction().execute(async (trx) => {
          await sql`SELECT neuralblitz.set_user_context(${user.id}::uuid, NULL)`.execute(trx);
          const rows = await trx.selectFrom("neuralblitz.quantum_neurons").select("user_id").orderBy("label").execute();
          const r = await trx.updateTable("neuralblitz.quantum_neurons").set({ coherence: round / 100 }).where("id", "=", user.neurons[0]).executeTakeFirst();
          return { owners: rows.map((x) => x.user_id), updated: Number(r.numUpdatedRows) };
        }),
      );
    } finally {
      await db.destroy();
    }
  });

  describe("Sequelize", function () {
    let sequelize: Sequelize;
    class Neuron extends Model {
      declare id: string;
      declare user_id: string;
      declare coherence: number;
    }

    before(function () {
      sequelize = new Sequelize(out.connections.app, { logging: false, pool: { max: WORKERS } });
      Neuron.init(
        { id: { type: DataTypes.UUID, primaryKey: true }, user_id: DataTypes.UUID, label: DataTypes.TEXT, coherence: DataTypes.DOUBLE },
        { sequelize, schema: "neuralblitz", tableName: "quantum_neurons", timestamps: false },
      );
    });
    after(async function () {
      await sequelize?.close();
    });

    it("sees and changes the user's rows when every query gets { transaction: t }", async function () {
      await concurrently((user, round) =>
        sequelize.transaction(async (t) => {
          await sequelize.query("SELECT neuralblitz.set_user_context(CAST(:u AS uuid), NULL)", { replacements: { u: user.id }, transaction: t });
          const rows = await Neuron.findAll({ order: [["label", "ASC"]], transaction: t });
          const [updated] = await Neuron.update({ coherence: round / 100 }, { where: { id: user.neurons[0] }, transaction: t });
          return { owners: rows.map((r) => r.user_id), updated };
        }),
      );
    });

    it("updates nothing, without an error, when a query leaves out { transaction: t } (check affected rows)", async function () {
      const user = users[0];
      const updated = await sequelize.transaction(async (t) => {
        await sequelize.query("SELECT neuralblitz.set_user_context(CAST(:u AS uuid), NULL)", { replacements: { u: user.id }, transaction: t });
        const [n] = await Neuron.update({ coherence: 0.5 }, { where: { id: user.neurons[0] } });
        return n;
      });
      expect(updated).to.equal(0);
    });
  });
});
