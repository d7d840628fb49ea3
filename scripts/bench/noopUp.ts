// `nbdb up` on an up-to-date stack against the first full `up` of the same stack: a throw-away
// stack per round (first up, then the no-op one, then purged). Timed in process through up(), so
// node's start-up (about half a second with ts-node) is in neither figure.
import { randomBytes } from "crypto";
import { down, up } from "../local/stack";
import { ratios, spread, timed } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

export const noopUp: Benchmark = {
  id: "up",
  title: "no-op nbdb up",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const rounds = sized(ctx, { quick: 1, full: ctx.rounds });
    const replicas = 1;
    const first: number[] = [];
    const again: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const stack = `bench-up-${randomBytes(3).toString("hex")}`;
      try {
        ctx.note(`first up of throw-away stack ${stack}, round ${round + 1}/${rounds}`);
        first.push(await timed(() => up({ stack, replicas })));
        ctx.note(`no-op up of ${stack}`);
        let changes: string[] = [];
        again.push(await timed(async () => (changes = (await up({ stack })).changes)));
        if (changes.length > 0) throw new Error(`the second up of ${stack} was not a no-op: ${changes.join("; ")}`);
      } finally {
        await down({ stack, purge: true, yes: true });
      }
    }
    const value = ratios(again, first);
    return [
      {
        id: "up.noop",
        title: "no-op nbdb up on an up-to-date stack",
        against: `the first full nbdb up of the same stack (primary, ${replicas} replica, PgBouncer, every bundle)`,
        goal: "≤ 1/20",
        value,
        unit: "of the first up's time",
        met: value.median <= 1 / 20,
        method: `up() in process (no node start-up in either side) on a fresh throw-away stack per round: first up, then the no-op up (asserted to change nothing), then purge; ${rounds} round(s). Not alternated: the no-op needs the full up before it.`,
        details: { firstUpMs: spread(first), noopUpMs: spread(again) },
        evidence: [],
      },
    ];
  },
};
