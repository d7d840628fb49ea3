// `nbdb audit verify`: the GoldenDAG chain checked link by link in the database (as nb_auditor),
// with the head's id and hash to record elsewhere (a digest kept outside the database is what
// shows that the whole chain was not rewritten, as QLDB's digests do).
import { Client } from "pg";

export interface AuditVerdict {
  readonly entries: number;
  readonly head: { id: number | null; hash: string };
  readonly broken: { id: number; reason: string }[];
}

export async function verifyAuditTrail(auditorUrl: string): Promise<AuditVerdict> {
  const client = new Client({ connectionString: auditorUrl, application_name: "nbdb-audit" });
  await client.connect();
  try {
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const broken = await client.query("SELECT id, reason FROM neuralblitz.verify_golden_dag()");
    const counts = await client.query(
      `SELECT (SELECT count(*) FROM neuralblitz.golden_dag_audit) AS entries, h.last_id, encode(h.last_hash, 'hex') AS last_hash
         FROM neuralblitz.golden_dag_head h`,
    );
    await client.query("COMMIT");
    const c = counts.rows[0];
    return {
      entries: Number(c.entries),
      head: { id: c.last_id === null ? null : Number(c.last_id), hash: c.last_hash },
      broken: broken.rows.map((r) => ({ id: Number(r.id), reason: r.reason })),
    };
  } finally {
    await client.end();
  }
}
