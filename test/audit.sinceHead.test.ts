// Incremental audit verification (`nbdb audit verify --since-head`, verify_golden_dag_since()) on a
// real local stack: it checks the recorded head and every entry chained after it, and finds what a
// superuser changed there, while entries before the recorded head are left to the full verification.
import { expect } from "chai";
import { execFile } from "child_process";
import * as path from "path";
import { RecordedHead, verifyAuditTrail } from "../scripts/ops/audit";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { addAuditedRows, asSuperuser, query, uniqueStack } from "./helpers";

const NBDB = path.join(__dirname, "..", "bin", "nbdb.js");

function nbdb(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [NBDB, ...args], { env: process.env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

describe("nbdb audit verify --since-head", function () {
  const stack = uniqueStack("since");
  let out: LocalStackOutputs;
  let recorded: RecordedHead;
  let beforeId: number;
  let afterId: number;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    await addAuditedRows(out, "before-head", 20);
    const head = (await verifyAuditTrail(out.connections.auditor)).head;
    recorded = { id: head.id!, hash: head.hash };
    await addAuditedRows(out, "after-head", 30);
    const ids = async (prefix: string, which: "min" | "max") =>
      Number((await query<{ id: string }>(out.connections.admin, `SELECT ${which}(id) AS id FROM neuralblitz.golden_dag_audit WHERE new_values ->> 'rule' LIKE $1`, [`${prefix}-%`]))[0].id);
    // The recorded head is the last entry before it (its own content is checked too): one well before it.
    beforeId = await ids("before-head", "min");
    expect(beforeId).to.be.lessThan(recorded.id);
    afterId = await ids("after-head", "max");
  });

  it("passes on an intact chain, verifying from the recorded head to the current one", async () => {
    const verdict = await verifyAuditTrail(out.connections.auditor, undefined, recorded);
    expect(verdict.scope).to.equal("since-head");
    expect(verdict.broken).to.deep.equal([]);
    expect(verdict.head.id).to.be.greaterThan(recorded.id);
  });

  it("finds an entry after the recorded head whose content a superuser changed, and the entry before it is not its scope", async () => {
    const original = (await query<{ new_values: object }>(out.connections.admin, "SELECT new_values FROM neuralblitz.golden_dag_audit WHERE id = $1", [afterId]))[0].new_values;
    const earlier = (await query<{ new_values: object }>(out.connections.admin, "SELECT new_values FROM neuralblitz.golden_dag_audit WHERE id = $1", [beforeId]))[0].new_values;
    await asSuperuser(out, `UPDATE neuralblitz.golden_dag_audit SET new_values = new_values || '{"threshold": 999}' WHERE id = $1`, [afterId]);
    await asSuperuser(out, `UPDATE neuralblitz.golden_dag_audit SET new_values = new_values || '{"threshold": 999}' WHERE id = $1`, [beforeId]);
    try {
      const since = await verifyAuditTrail(out.connections.auditor, undefined, recorded);
      expect(since.broken).to.deep.equal([{ id: afterId, reason: "content altered: the entry does not hash to its sealed entry_hash" }]);
      // The full verification finds both.
      const full = (await verifyAuditTrail(out.connections.auditor)).broken.map((b) => b.id);
      expect(full).to.include.members([beforeId, afterId]);
    } finally {
      await asSuperuser(out, "UPDATE neuralblitz.golden_dag_audit SET new_values = $2 WHERE id = $1", [afterId, original]);
      await asSuperuser(out, "UPDATE neuralblitz.golden_dag_audit SET new_values = $2 WHERE id = $1", [beforeId, earlier]);
    }
    expect((await verifyAuditTrail(out.connections.auditor, undefined, recorded)).broken).to.deep.equal([]);
  });

  it("reports a chain that no longer leads from the recorded head to the current head", async () => {
    const seal = (await query<Record<string, unknown>>(out.connections.admin, "SELECT * FROM neuralblitz.golden_dag_seals WHERE prev_id = $1", [recorded.id]))[0];
    await asSuperuser(out, "DELETE FROM neuralblitz.golden_dag_seals WHERE entry_id = $1", [seal.entry_id]);
    try {
      const reasons = (await verifyAuditTrail(out.connections.auditor, undefined, recorded)).broken.map((b) => b.reason);
      expect(reasons).to.include(`head not reached: the chain from the recorded entry ${recorded.id} does not lead to the head`);
    } finally {
      await asSuperuser(
        out,
        "INSERT INTO neuralblitz.golden_dag_seals (entry_id, prev_id, prev_hash, entry_hash, committed_at, sealed_at) VALUES ($1, $2, $3, $4, $5, $6)",
        [seal.entry_id, seal.prev_id, seal.prev_hash, seal.entry_hash, seal.committed_at, seal.sealed_at],
      );
    }
    expect((await verifyAuditTrail(out.connections.auditor, undefined, recorded)).broken).to.deep.equal([]);
  });

  it("reports a recorded head whose hash the chain no longer holds, and checks nothing else", async () => {
    const forged = { id: recorded.id, hash: "ab".repeat(32) };
    const verdict = await verifyAuditTrail(out.connections.auditor, undefined, forged);
    expect(verdict.broken).to.deep.equal([
      { id: recorded.id, reason: `recorded head: the entry's hash is now ${recorded.hash}, not ${forged.hash}: the chain was rewritten` },
    ]);
  });

  it("is what the command runs: exit 0 and 'intact since', exit 2 naming --since-head on bad input or with --expect-head", async () => {
    const ok = await nbdb(["audit", "verify", "--stack", stack, "--since-head", `${recorded.id}:${recorded.hash}`]);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.include(`audit chain intact since ${recorded.id}:`);
    const bad = await nbdb(["audit", "verify", "--stack", stack, "--since-head", "12:nothex"]);
    expect(bad.code).to.equal(2);
    expect(bad.stderr + bad.stdout).to.include("--since-head takes <entry id>:<sha256 hex>");
    const both = await nbdb(["audit", "verify", "--stack", stack, "--since-head", `${recorded.id}:${recorded.hash}`, "--expect-head", `${recorded.id}:${recorded.hash}`]);
    expect(both.code).to.equal(2);
    expect(both.stderr + both.stdout).to.include("--expect-head and --since-head both name a recorded head");
  });
});
