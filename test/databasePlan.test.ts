// The database plan (infra/database/plan.ts) is the one order of set-up: its executor runs each step
// once, in order, pausing only between steps; the local stack runs exactly that order against a real
// server. (The Pulumi layer's order is checked under mocks in test/pulumi.database.test.ts.)
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { DATABASE_PLAN, PLAN_STEP_IDS, PlanActions, PlanRun, PlanStepId } from "../infra/database/plan";
import { up } from "../scripts/local/stack";
import { query, uniqueStack } from "./helpers";

const ROOT = path.join(__dirname, "..");

/** The step ids of `database plan <n>: <id> (...)` log lines, in the order logged. */
function planSteps(lines: readonly string[]): string[] {
  return lines.map((l) => /^database plan (\d+): (\w+) \(/.exec(l)).filter((m) => m !== null).map((m) => m![2]);
}

describe("the database plan", function () {
  it("lists every step once, each with who runs it and the renderers of its SQL, which exist", function () {
    expect(DATABASE_PLAN.map((s) => s.id)).to.deep.equal([...PLAN_STEP_IDS]);
    for (const step of DATABASE_PLAN) {
      expect(step.runsAs, step.id).to.not.equal("");
      expect(step.sql.length, step.id).to.be.greaterThan(0);
      for (const ref of step.sql) {
        const m = /^([\w/]+\.ts) \((\w+)\)$/.exec(ref);
        expect(m, `${step.id}: ${ref}`).to.not.equal(null);
        expect(fs.existsSync(path.join(ROOT, m![1])), ref).to.equal(true);
        expect(require(path.join(ROOT, m![1])), ref).to.have.property(m![2]);
      }
    }
  });

  it("runs steps in plan order, each once, pausing only between them", async function () {
    const ran: PlanStepId[] = [];
    const actions = Object.fromEntries(PLAN_STEP_IDS.map((id) => [id, async () => (ran.push(id), [id])])) as unknown as PlanActions<string>;
    const heard: string[] = [];
    const run = new PlanRun(actions, (s, i) => heard.push(`${i}:${s.id}`));
    expect(await run.through("access")).to.deep.equal(["roles", "database", "schema", "access"]);
    // Asking again for a step already run runs nothing; asking for the last runs every step left.
    expect(await run.through("schema")).to.deep.equal([]);
    expect(await run.through("schedule")).to.deep.equal(["bundles", "auditTrail", "partitions", "grants", "schedule"]);
    expect(ran).to.deep.equal([...PLAN_STEP_IDS]);
    expect(run.ran).to.deep.equal([...PLAN_STEP_IDS]);
    expect(heard).to.deep.equal(PLAN_STEP_IDS.map((id, i) => `${i}:${id}`));
  });

  it("stops at the failing step: the steps after it do not run", async function () {
    const ran: string[] = [];
    const actions = Object.fromEntries(
      PLAN_STEP_IDS.map((id) => [id, async () => {
        if (id === "bundles") throw new Error("bundle refused");
        ran.push(id);
        return [];
      }]),
    ) as unknown as PlanActions<string>;
    const run = new PlanRun(actions);
    let failure = "";
    await run.through("schedule").catch((e: Error) => (failure = e.message));
    expect(failure).to.equal("bundle refused");
    expect(ran).to.deep.equal(["roles", "database", "schema", "access"]);
  });

  describe("on the local stack (nbdb up), against a real server", function () {
    const stack = uniqueStack("plan");

    it("runs exactly the plan's steps in the plan's order on a new stack, and again on an up-to-date one, changing nothing", async function () {
      const first: string[] = [];
      const made = await up({ stack, replicas: 0, log: (l) => first.push(l) });
      expect(planSteps(first)).to.deep.equal([...PLAN_STEP_IDS]);
      expect(made.changes).to.include("created roles, database and schema");
      // What the last steps did is there: the trail, the policy bundle, the table grants.
      const [row] = await query<{ trail: string; grant: boolean; policy: number }>(
        made.outputs.connections.migrator,
        `SELECT pg_catalog.pg_get_userbyid(relowner)::text AS trail,
                has_table_privilege('nb_app', 'neuralblitz.users', 'INSERT') AS grant,
                (SELECT count(*)::int FROM neuralblitz.bundle_ledger WHERE name = 'deploy__partition_maintenance') AS policy
           FROM pg_catalog.pg_class WHERE oid = 'neuralblitz.golden_dag_audit'::regclass`,
      );
      expect(row).to.deep.equal({ trail: "nb_audit", grant: true, policy: 1 });

      const again: string[] = [];
      const res = await up({ stack, log: (l) => again.push(l) });
      expect(planSteps(again)).to.deep.equal([...PLAN_STEP_IDS]);
      expect(res.changes).to.deep.equal([]);
    });

    it("runs only the steps through access when asked for no bundles", async function () {
      const lines: string[] = [];
      await up({ stack, bundles: false, log: (l) => lines.push(l) });
      expect(planSteps(lines)).to.deep.equal(PLAN_STEP_IDS.slice(0, PLAN_STEP_IDS.indexOf("access") + 1));
    });
  });
});
