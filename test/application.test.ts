// The application's guide (docs/application.md), for real through the pooler: decrypting in the
// read-only path is refused by the privilege model (the README shows the write pool), retries on
// SQLSTATE 40001, LISTEN on the session-mode entry, and the bulk path for COPY under RLS.
import { expect } from "chai";
import { randomUUID } from "crypto";
import { Client } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { pipeline } from "stream/promises";
import { Readable } from "stream";
import { NeuralBlitzDb, bulkInsert, isRetryable, withRetry } from "../client";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, readDataKey, requireStack } from "../scripts/local/state";
import { poolCounts } from "../scripts/local/pooler";
import { sessionPoolDatabase } from "../client/outputs";
import { waitFor } from "../scripts/local/system";
import { rejection, uniqueStack } from "./helpers";

const HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

describe("the application's guide", function () {
  const stack = uniqueStack("app");
  let out: LocalStackOutputs;
  let db: NeuralBlitzDb;
  const alice = randomUUID();
  const bob = randomUUID();

  async function createUser(id: string, name: string): Promise<string> {
    return db.withUser(id, async (tx) => {
      await tx.query(
        `INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash, status)
         VALUES ($1, $2, neuralblitz.encrypt_secret($3), neuralblitz.lookup_hash($3), $4, 'active')`,
        [id, name, `${name}@example.com`, HASH],
      );
      return (await tx.query("INSERT INTO neuralblitz.quantum_neurons (user_id, label) VALUES ($1, 'n') RETURNING id", [id])).rows[0].id as string;
    });
  }

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    db = new NeuralBlitzDb({ outputs: out, dataKey: readDataKey(stack), max: 4 });
    await createUser(alice, "alice");
    await createUser(bob, "bob");
  });

  after(async function () {
    await db?.close();
  });

  describe("encrypted columns", function () {
    it("decrypt in a transaction of the write pool, as the README shows", async function () {
      const rows = await db.withUser(alice, async (tx) => (await tx.query("SELECT neuralblitz.decrypt_secret(email_encrypted) AS email FROM neuralblitz.users")).rows);
      expect(rows).to.deep.equal([{ email: "alice@example.com" }]);
    });

    it("are not decrypted by the read-only role: the privilege model keeps secrets to nb_app", async function () {
      const msg = await rejection(db.withUser(alice, (tx) => tx.query("SELECT neuralblitz.decrypt_secret(email_encrypted) FROM neuralblitz.users"), { readOnly: true }));
      expect(msg).to.match(/permission denied for function decrypt_secret/);
    });
  });

  describe("withUser's round trips", function () {
    /** A pool of one connection whose ReadyForQuery messages (one per round trip) are counted. */
    async function countingDb(): Promise<{ db: NeuralBlitzDb; trips: () => number }> {
      const counted = new NeuralBlitzDb({ outputs: out, dataKey: readDataKey(stack), max: 1 });
      let n = 0;
      for (const pool of [counted.write, ...counted.read]) {
        pool.on("connect", (c) => (c as unknown as { connection: NodeJS.EventEmitter }).connection.on("readyForQuery", () => n++));
      }
      return { db: counted, trips: () => n };
    }

    it("begins and names the user in one round trip, on the write pool and the read-only one", async function () {
      const { db: counted, trips } = await countingDb();
      try {
        for (const readOnly of [false, true]) {
          await counted.withUser(alice, async () => undefined, { readOnly }); // the connection made
          const before = trips();
          const seen = await counted.withUser(
            alice,
            async (tx) => {
              const tripsToBegin = trips() - before;
              const r = await tx.query("SELECT neuralblitz.current_user_id()::text AS who, pg_catalog.current_setting('transaction_read_only') AS ro");
              return { tripsToBegin, ...r.rows[0] };
            },
            { readOnly },
          );
          expect(seen).to.deep.equal({ tripsToBegin: 1, who: alice, ro: readOnly ? "on" : "off" });
        }
      } finally {
        await counted.close();
      }
    });

    it("rejects with the server's error when naming the user fails, runs nothing of fn, and leaves the connection in step", async function () {
      // A data key the server refuses as a parameter (NUL bytes are no UTF-8 text): the BEGIN went
      // out with it, so the transaction is aborted and rolled back; the pool's one connection goes on.
      const bad = new NeuralBlitzDb({ outputs: out, dataKey: "\u0000".repeat(40), max: 1 });
      try {
        for (const readOnly of [false, true]) {
          let ran = false;
          const msg = await rejection(bad.withUser(alice, async () => { ran = true; }, { readOnly }));
          expect(msg).to.match(/invalid byte sequence for encoding "UTF8": 0x00/);
          expect(ran).to.equal(false);
          for (const pool of [bad.write, ...bad.read]) expect((await pool.query("SELECT 41 + 1 AS n")).rows).to.deep.equal([{ n: 42 }]);
        }
      } finally {
        await bad.close();
      }
    });
  });

  describe("withRetry on SQLSTATE 40001", function () {
    it("runs the whole transaction again after a lost race, deciding on fresh data, and succeeds", async function () {
      const neuron = await db.withUser(alice, async (tx) => (await tx.query("SELECT id FROM neuralblitz.quantum_neurons")).rows[0].id as string);
      // Someone else changes the neuron after our first read: the first attempt holds a stale version.
      let stale: number | undefined = Number((await db.withUser(alice, (tx) => tx.query("SELECT version FROM neuralblitz.quantum_neurons WHERE id = $1", [neuron]))).rows[0].version);
      await db.withUser(alice, (tx) => tx.query("SELECT neuralblitz.change_neuron_state($1, $2, '{\"by\":\"other\"}', 0.5, 0, 1)", [neuron, stale]));
      const retried: string[] = [];
      const version = await withRetry(
        () =>
          db.withUser(alice, async (tx) => {
            const expected = stale ?? Number((await tx.query("SELECT version FROM neuralblitz.quantum_neurons WHERE id = $1", [neuron])).rows[0].version);
            stale = undefined;
            return Number((await tx.query("SELECT neuralblitz.change_neuron_state($1, $2, '{\"by\":\"us\"}', 0.25, 0, 1) AS v", [neuron, expected])).rows[0].v);
          }),
        { onRetry: (attempt, e) => retried.push(`${attempt}: ${(e as Error & { code?: string }).code}`) },
      );
      expect(retried).to.deep.equal(["1: 40001"]);
      const [row] = (await db.withUser(alice, (tx) => tx.query("SELECT version, state FROM neuralblitz.quantum_neurons WHERE id = $1", [neuron]))).rows;
      expect(Number(row.version)).to.equal(version);
      expect(row.state).to.deep.equal({ by: "us" });
    });

    it("never retries another error, and gives up after the attempts asked for", async function () {
      let calls = 0;
      const other = await rejection(withRetry(() => (calls++, db.withUser(alice, (tx) => tx.query("SELECT 1/0")))));
      expect(other).to.match(/division by zero/);
      expect(calls).to.equal(1);
      calls = 0;
      const lost = withRetry(
        () => (calls++, db.withUser(alice, (tx) => tx.query("DO $$BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END$$"))),
        { attempts: 3, baseDelayMs: 1 },
      );
      const e = await lost.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isRetryable(e)).to.equal(true);
      expect(calls).to.equal(3);
    });
  });

  describe("LISTEN", function () {
    it("receives notifications on the pooler's session-mode entry, sent from a pooled transaction", async function () {
      const got: string[] = [];
      const listener = await db.listen("nb_guide", (payload) => got.push(payload));
      try {
        await db.withUser(alice, (tx) => tx.query("SELECT pg_notify('nb_guide', $1)", [alice]));
        await waitFor("the notification", 10_000, async () => (got.length > 0 ? true : undefined));
        expect(got).to.deep.equal([alice]);
        // The listener holds its own server session: the session-mode pool, not the transaction pool.
        const pools = await poolCounts(requireStack(stack));
        expect(pools.find((p) => p.database === sessionPoolDatabase(out.database) && p.user === "nb_app")).to.include({ poolMode: "session", serversActive: 1 });
      } finally {
        await listener.close();
      }
    });

    it("refuses a channel name it would have to quote", async function () {
      expect(await rejection(db.listen("x; DROP TABLE y", () => undefined))).to.match(/not a channel name/);
    });
  });

  describe("bulk writes under row-level security", function () {
    it("COPY FROM is refused by PostgreSQL on a table with RLS (why bulkInsert exists)", async function () {
      const c = new Client({ connectionString: out.connections.app });
      await c.connect();
      try {
        await c.query("BEGIN");
        await c.query("SELECT neuralblitz.set_user_context($1::uuid, NULL)", [alice]);
        const msg = await rejection(pipeline(Readable.from([`${alice}\tcopied\n`]), c.query(copyFrom("COPY neuralblitz.quantum_neurons (user_id, label) FROM STDIN"))));
        expect(msg).to.match(/COPY FROM not supported with row-level security/);
      } finally {
        await c.query("ROLLBACK").catch(() => undefined);
        await c.end();
      }
    });

    it("bulkInsert writes thousands of the user's rows in a few statements, each checked by the policy", async function () {
      const rows = Array.from({ length: 6_000 }, (_, i) => ({ user_id: alice, label: `bulk-${i}`, amplitude: (i % 100) / 100 }));
      const n = await db.withUser(alice, (tx) => bulkInsert(tx, "quantum_neurons", ["user_id", "label", "amplitude"], rows));
      expect(n).to.equal(6_000);
      const [row] = (await db.withUser(alice, (tx) => tx.query("SELECT count(*)::int AS n, bool_and(user_id = $1) AS own FROM neuralblitz.quantum_neurons WHERE label LIKE 'bulk-%'", [alice]))).rows;
      expect(row).to.deep.equal({ n: 6_000, own: true });
    });

    it("refuses the whole batch when one row belongs to another user, inserting nothing", async function () {
      const rows = [
        { user_id: alice, label: "mixed-1" },
        { user_id: bob, label: "mixed-2" },
      ];
      const msg = await rejection(db.withUser(alice, (tx) => bulkInsert(tx, "quantum_neurons", ["user_id", "label"], rows)));
      expect(msg).to.match(/row-level security/);
      const [row] = (await db.withUser(alice, (tx) => tx.query("SELECT count(*)::int AS n FROM neuralblitz.quantum_neurons WHERE label LIKE 'mixed-%'"))).rows;
      expect(row.n).to.equal(0);
      expect(await rejection(db.withUser(alice, (tx) => bulkInsert(tx, "quantum_neurons", ["label; DROP"], rows)))).to.match(/not a column name/);
    });
  });
});
