// Downtime of a planned switchover as the application sees it (issue 18): writers commit through
// the pooler while `nbdb switchover` pauses the pool, stops the primary, promotes the replica and
// exchanges the data directories. Pooled clients are held, never refused, so the figure is the
// longest any single commit waited, with the client errors and lost acknowledged commits (every id
// acknowledged is looked up on the new primary afterwards) beside it. An absolute bound: a
// switchover has no side to compare with. The goal is the pooler's query_wait_timeout, past which
// a held client would get an error.
import { POOLER_FAILURE_SETTINGS } from "../../infra/topology/pgbouncerIni";
import { replicaName } from "../local/postgresNode";
import { switchover as runSwitchover } from "../local/switchover";
import { sleep, waitFor } from "../local/system";
import { withClient } from "./db";
import { BENCH_SCHEMA } from "./fixtures";
import { spread, timed } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";
import { startWriters } from "./writeStall";

export const SWITCHOVER_GOAL_S = POOLER_FAILURE_SETTINGS.queryWaitTimeout;
const ACKS = `${BENCH_SCHEMA}.switchover_acks`;
/** Commits the writers make before the switchover and after it returned (writes resumed). */
const COMMITS_AROUND = 50;
const RESUME_TIMEOUT_MS = 60_000;

/** The acknowledged ids the new primary does not hold. */
export function lostCommits(acked: readonly string[], present: Iterable<string>): string[] {
  const held = new Set(present);
  return acked.filter((id) => !held.has(id));
}

/** Met only when every round kept the longest wait within the goal, with no client error and no lost commit. */
export function switchoverMet(rounds: readonly { worstS: number; errors: number; lost: number }[], goalS = SWITCHOVER_GOAL_S): boolean {
  return rounds.length > 0 && rounds.every((r) => r.worstS <= goalS && r.errors === 0 && r.lost === 0);
}

export const switchoverDowntime: Benchmark = {
  id: "switchover",
  title: "switchover under write load through the pooler",
  async run(ctx: BenchContext): Promise<Figure[]> {
    if (ctx.outputs.replicas.length === 0) throw new Error(`stack '${ctx.stack}' has no replica to switch over to; add one with: npx nbdb up --stack ${ctx.stack} --replicas 1`);
    const rounds = sized(ctx, { quick: 1, full: ctx.rounds });
    const writers = sized(ctx, { quick: 2, full: 4 });
    // Replica 0 each round: with one replica, every round swaps the data back.
    const to = replicaName(0);
    const admin = ctx.outputs.connections.admin;
    await withClient(admin, (c) =>
      c.query(`CREATE TABLE ${ACKS} (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now()); GRANT USAGE ON SCHEMA ${BENCH_SCHEMA} TO nb_app; GRANT INSERT ON ${ACKS} TO nb_app`),
    );
    const results: { worstS: number; errors: number; lost: number; commandS: number; acked: number }[] = [];
    try {
      for (let round = 0; round < rounds; round++) {
        ctx.note(`switchover to ${to} under ${writers} pooled writers, round ${round + 1}/${rounds}`);
        const load = startWriters(ctx.outputs.connections.app, `INSERT INTO ${ACKS} (id) VALUES ($1)`, writers, { keyed: true });
        let commandMs: number;
        let acked: string[];
        let errors: number;
        let worstMs: number;
        try {
          const committed = async (n: number) => {
            const from = load.commits();
            await waitFor(`${n} more commits through the pooler`, RESUME_TIMEOUT_MS, async () => (load.commits() >= from + n ? true : undefined));
          };
          await committed(COMMITS_AROUND);
          commandMs = await timed(() => runSwitchover({ stack: ctx.stack, to, log: ctx.note }));
          // Writes resumed through the same pooler URL.
          await committed(COMMITS_AROUND);
          await sleep(100);
        } finally {
          ({ acked, errors, worstMs } = await load.stop());
        }
        const present = await withClient(admin, async (c) => (await c.query(`SELECT id FROM ${ACKS} WHERE id = ANY($1::text[])`, [acked])).rows.map((r) => r.id as string));
        const lost = lostCommits(acked, present);
        if (lost.length) ctx.note(`${lost.length} acknowledged commit(s) missing on the new primary, e.g. ${lost.slice(0, 3).join(", ")}`);
        results.push({ worstS: worstMs / 1000, errors, lost: lost.length, commandS: commandMs / 1000, acked: acked.length });
      }
    } finally {
      await withClient(admin, (c) => c.query(`DROP TABLE IF EXISTS ${ACKS}`));
    }
    const value = spread(results.map((r) => r.worstS));
    return [
      {
        id: "switchover.wait",
        title: "switchover: longest commit wait of pooled writers",
        against: `an absolute bound (a switchover has no side to compare with): the pooler's query_wait_timeout (${SWITCHOVER_GOAL_S} s), with no client error and no acknowledged commit lost`,
        goal: `≤ ${SWITCHOVER_GOAL_S} s, 0 errors, 0 lost`,
        value,
        unit: "s (longest single commit)",
        met: switchoverMet(results),
        method:
          `${writers} writers as nb_app through the pooler commit single-row inserts with a unique id each (5 ms apart); after ${COMMITS_AROUND} commits, switchover() to ${to} runs in process ` +
          `(PAUSE of the pool, clean stop of the primary, promotion, exchange of the data directories, RESUME, then its closing up), and the writers go on until ${COMMITS_AROUND} more commits landed. ` +
          `Every acknowledged id is then looked up on the new primary. ${rounds} round(s), each switching the data back and forth between the two directories (replica 0 each time).`,
        details: {
          commandSeconds: spread(results.map((r) => r.commandS)),
          clientErrors: results.reduce((a, r) => a + r.errors, 0),
          lostCommits: results.reduce((a, r) => a + r.lost, 0),
          acknowledgedCommits: results.reduce((a, r) => a + r.acked, 0),
          writers,
          rounds,
        },
        evidence: [],
      },
    ];
  },
};
