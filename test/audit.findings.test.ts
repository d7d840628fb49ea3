// Every kind of finding of the full audit verification (verify_golden_dag()) and of the incremental
// one (verify_golden_dag_since()), on a real local stack: a superuser tampers with an entry, a seal
// or the head after the recorded head, inside a transaction that is rolled back, and both
// verifications, run in that transaction, report exactly what each check is for. The checks are
// separate joins shaped for speed; this holds their meaning.
import { expect } from "chai";
import { Client } from "pg";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { addAuditedRows, query, uniqueStack } from "./helpers";

interface Finding {
  id: number;
  reason: string;
}

const ALTERED = "content altered: the entry does not hash to its sealed entry_hash";
const GONE = "missing: sealed into the chain, but gone from the trail";

describe("audit verification findings, full and since a recorded head", function () {
  const stack = uniqueStack("findings");
  let out: LocalStackOutputs;
  let recorded: { id: number; hash: string };
  /** Three entries chained one after another after the recorded head, and the chain's last two. */
  let previous: number, entry: number, after: number, penultimate: number, last: number;

  /** The rows the last tampering statement returned. */
  let tampered: Record<string, unknown>[] = [];

  async function findingsAfter(tamper: string, params: unknown[] = []): Promise<{ full: Finding[]; since: Finding[] }> {
    const c = new Client({ connectionString: out.connections.admin });
    await c.connect();
    try {
      await c.query("BEGIN");
      await c.query("SET LOCAL session_replication_role = replica");
      tampered = (await c.query(tamper, params)).rows;
      const rows = async (sql: string, p: unknown[] = []) => (await c.query(sql, p)).rows.map((r) => ({ id: Number(r.id), reason: r.reason as string }));
      return {
        full: await rows("SELECT id, reason FROM neuralblitz.verify_golden_dag()"),
        since: await rows("SELECT id, reason FROM neuralblitz.verify_golden_dag_since($1, decode($2, 'hex'))", [recorded.id, recorded.hash]),
      };
    } finally {
      await c.query("ROLLBACK").catch(() => undefined);
      await c.end();
    }
  }

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    await addAuditedRows(out, "before-head", 10);
    const head = (await query<{ last_id: string; hash: string }>(out.connections.admin, "SELECT last_id, encode(last_hash, 'hex') AS hash FROM neuralblitz.golden_dag_head"))[0];
    recorded = { id: Number(head.last_id), hash: head.hash };
    await addAuditedRows(out, "after-head", 10);
    // Chain order from the recorded head, as the seals link it.
    const chain = (
      await query<{ entry_id: string }>(
        out.connections.admin,
        `WITH RECURSIVE w AS (SELECT entry_id, 0 AS n FROM neuralblitz.golden_dag_seals WHERE entry_id = $1
                            UNION ALL SELECT s.entry_id, w.n + 1 FROM w JOIN neuralblitz.golden_dag_seals s ON s.prev_id = w.entry_id)
         SELECT entry_id FROM w ORDER BY n`,
        [recorded.id],
      )
    ).map((r) => Number(r.entry_id));
    expect(chain.length).to.be.greaterThan(6);
    [previous, entry, after] = chain.slice(2, 5);
    [penultimate, last] = chain.slice(-2);
  });

  it("finds nothing on an intact chain", async () => {
    expect(await findingsAfter("SELECT 1")).to.deep.equal({ full: [], since: [] });
  });

  it("finds an entry whose content changed", async () => {
    const found = await findingsAfter(`UPDATE neuralblitz.golden_dag_audit SET new_values = new_values || '{"threshold": 999}' WHERE id = $1`, [entry]);
    expect(found).to.deep.equal({ full: [{ id: entry, reason: ALTERED }], since: [{ id: entry, reason: ALTERED }] });
  });

  it("finds a sealed entry gone from the trail", async () => {
    const found = await findingsAfter("DELETE FROM neuralblitz.golden_dag_audit WHERE id = $1", [entry]);
    expect(found).to.deep.equal({ full: [{ id: entry, reason: GONE }], since: [{ id: entry, reason: GONE }] });
  });

  it("finds a broken link (the seal's prev_hash, which its own hash covers too)", async () => {
    const found = await findingsAfter("UPDATE neuralblitz.golden_dag_seals SET prev_hash = decode(repeat('01', 32), 'hex') WHERE entry_id = $1", [entry]);
    const expected = [
      { id: entry, reason: ALTERED },
      { id: entry, reason: `link broken: prev_hash is not the hash of entry ${previous}` },
    ];
    expect(found).to.deep.equal({ full: expected, since: expected });
  });

  it("finds a seal gone from the middle of the chain; the walk from the recorded head no longer reaches the head", async () => {
    const found = await findingsAfter("DELETE FROM neuralblitz.golden_dag_seals WHERE entry_id = $1", [entry]);
    expect(found).to.deep.equal({
      full: [{ id: entry, reason: `missing: entry ${after} follows it, but its seal is not in the chain` }],
      since: [{ id: last, reason: `head not reached: the chain from the recorded entry ${recorded.id} does not lead to the head` }],
    });
  });

  it("finds a second beginning", async () => {
    const found = await findingsAfter("UPDATE neuralblitz.golden_dag_seals SET prev_id = NULL WHERE entry_id = $1", [entry]);
    expect(found).to.deep.equal({
      full: [
        { id: entry, reason: ALTERED },
        { id: entry, reason: "second beginning: no previous entry, but it is not the first" },
      ],
      since: [{ id: last, reason: `head not reached: the chain from the recorded entry ${recorded.id} does not lead to the head` }],
    });
  });

  it("finds a head holding another hash, a head short of the last seal, and a head naming no seal", async () => {
    const mismatch = [{ id: last, reason: "head mismatch: the chain head holds another hash for this entry" }];
    expect(await findingsAfter("UPDATE neuralblitz.golden_dag_head SET last_hash = decode(repeat('00', 32), 'hex')")).to.deep.equal({ full: mismatch, since: mismatch });
    const beyond = [{ id: last, reason: "beyond the head: sealed after the entry the head names" }];
    const short = await findingsAfter(
      "UPDATE neuralblitz.golden_dag_head SET last_id = $1, last_hash = (SELECT entry_hash FROM neuralblitz.golden_dag_seals WHERE entry_id = $1)",
      [penultimate],
    );
    expect(short).to.deep.equal({ full: beyond, since: beyond });
    const nowhere = await findingsAfter("UPDATE neuralblitz.golden_dag_head SET last_id = $1", [last + 1000]);
    expect(nowhere).to.deep.equal({
      full: [{ id: last + 1000, reason: "missing: the chain head names it, but it is not in the chain" }],
      since: [{ id: last + 1000, reason: `head not reached: the chain from the recorded entry ${recorded.id} does not lead to the head` }],
    });
  });

  it("finds an entry left unsealed for over a day", async () => {
    const found = await findingsAfter(
      `INSERT INTO neuralblitz.golden_dag_audit (recorded_at, table_name, operation, row_pk, db_role, new_values)
       VALUES (now() - interval '2 days', 'monitoring_alerts', 'INSERT', '{"id": null}', 'postgres', '{}') RETURNING id`,
    );
    const unsealed = [{ id: Number(tampered[0].id), reason: "not sealed: committed over a day ago, but not in the chain (run neuralblitz.seal_golden_dag(p_window => '30 days'))" }];
    expect(found).to.deep.equal({ full: unsealed, since: unsealed });
  });
});
