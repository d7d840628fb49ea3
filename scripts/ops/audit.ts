// `nbdb audit verify`: the GoldenDAG chain checked link by link in the database (as nb_auditor),
// with the head's id and hash to record elsewhere (a digest kept outside the database is what
// shows that the whole chain was not rewritten, as QLDB's digests do).
import { Client } from "pg";
import { withClient, withTransaction } from "../db";
import { UserError } from "../errors";

export interface AuditVerdict {
  /** "full": every entry; "since-head": the recorded head and the entries chained after it. */
  readonly scope: "full" | "since-head";
  readonly entries: number;
  /** Entries this run chained before verifying (committed since the sealer last ran). */
  readonly sealedNow: number;
  /** Entries not in the chain yet: committed in the last second, or in transactions still open. */
  readonly unsealed: number;
  readonly head: { id: number | null; hash: string };
  readonly broken: { id: number; reason: string }[];
}

/** A head recorded earlier, as `nbdb audit verify` prints it: `<id>:<sha256 hex>`. */
export interface RecordedHead {
  readonly id: number;
  readonly hash: string;
}

export function parseRecordedHead(text: string, option = "--expect-head"): RecordedHead {
  const m = /^(\d+):([0-9a-f]{64})$/.exec(text.trim());
  if (!m) throw new UserError(`${option} takes <entry id>:<sha256 hex>, as nbdb audit verify printed it, got '${text}'.`);
  return { id: Number(m[1]), hash: m[2] };
}

/** Whether an entry recorded earlier still has its hash: if not, the chain was rewritten since. */
async function checkRecordedHead(client: Client, head: RecordedHead): Promise<{ id: number; reason: string }[]> {
  const { rows } = await client.query(
    "SELECT encode(entry_hash, 'hex') AS hash FROM neuralblitz.golden_dag_seals WHERE entry_id = $1",
    [head.id],
  );
  if (rows.length === 0) return [{ id: head.id, reason: "recorded head: the entry is no longer in the chain" }];
  if (rows[0].hash !== head.hash) return [{ id: head.id, reason: `recorded head: the entry's hash is now ${rows[0].hash}, not ${head.hash}: the chain was rewritten` }];
  return [];
}

/**
 * Verifies the whole chain (with `expectHead`, also that it still holds that head), or with
 * `sinceHead` incrementally: that the chain still holds that head, and every entry chained after it
 * (verify_golden_dag_since()), so the work grows with what was appended since, not with the chain.
 */
export async function verifyAuditTrail(auditorUrl: string, expectHead?: RecordedHead, sinceHead?: RecordedHead): Promise<AuditVerdict> {
  if (expectHead && sinceHead) throw new UserError("--expect-head and --since-head both name a recorded head: give one (--since-head checks it too, and verifies only what was chained after it).");
  return withClient(auditorUrl, async (client) => {
    // First chain what has committed since the sealer last ran, so the verdict covers it.
    // A chain that was tampered with can make the sealer fail (e.g. a head that is no longer the
    // last seal): the verification below still runs and says what is broken.
    let sealed = 0;
    let sealFailure: string | undefined;
    try {
      sealed = Number((await client.query("SELECT neuralblitz.seal_golden_dag() AS n")).rows[0].n);
    } catch (e) {
      sealFailure = (e as Error).message;
    }
    const { broken, headBroken, counts } = await withTransaction(
      client,
      async () => ({
        broken: sinceHead
          ? await client.query("SELECT id, reason FROM neuralblitz.verify_golden_dag_since($1, decode($2, 'hex'))", [sinceHead.id, sinceHead.hash])
          : await client.query("SELECT id, reason FROM neuralblitz.verify_golden_dag()"),
        headBroken: expectHead ? await checkRecordedHead(client, expectHead) : [],
        counts: await client.query(
          `SELECT (SELECT count(*) FROM neuralblitz.golden_dag_audit) AS entries,
                  (SELECT count(*) FROM neuralblitz.golden_dag_audit a WHERE NOT EXISTS (SELECT 1 FROM neuralblitz.golden_dag_seals s WHERE s.entry_id = a.id)) AS unsealed,
                  h.last_id, encode(h.last_hash, 'hex') AS last_hash
             FROM neuralblitz.golden_dag_head h`,
        ),
      }),
      { mode: "ISOLATION LEVEL REPEATABLE READ READ ONLY" },
    );
    const c = counts.rows[0];
    return {
      scope: sinceHead ? "since-head" : "full",
      entries: Number(c.entries),
      sealedNow: sealed,
      unsealed: Number(c.unsealed),
      head: { id: c.last_id === null ? null : Number(c.last_id), hash: c.last_hash },
      broken: [
        ...broken.rows.map((r) => ({ id: Number(r.id), reason: r.reason })),
        ...headBroken,
        ...(sealFailure ? [{ id: c.last_id === null ? 0 : Number(c.last_id), reason: `the sealer failed, new entries are not chained: ${sealFailure}` }] : []),
      ],
    };
  }, "nbdb-audit");
}
