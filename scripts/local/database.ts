// The local stack's executor of the database plan (infra/database/plan.ts): the same steps in the
// same order as the Pulumi stacks' infra/database/layer.ts, each run in-process as the role the plan
// names. `nbdb up` runs the steps through `access` once the primary runs (the replicas and the
// pooler need the roles and the database), and the rest once the pooler is up. Each step reports
// only what it changed, so `nbdb up` on an up-to-date stack reports nothing.
import { applyBundles } from "../../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../../infra/bundles/catalog";
import { partitionMaintenanceBundle } from "../../infra/database/partitionMaintenance";
import { PlanActions, PlanRun } from "../../infra/database/plan";
import { withClient } from "../db";
import { convergeGrants } from "./grants";
import { maintainPartitions, summarizePartitionActions } from "./partitions";
import { ensureMaintenanceSchedule } from "./schedule";
import { convergeAccess, convergeRoles, createRoles, createSchema, ensureAuditTrail, ensureDatabase } from "./bootstrap";
import { StackState, outputsOf, saveState } from "./state";

export interface LocalPlanOptions {
  /** The bundles to apply. With another directory than the repository's (tests), the steps after the bundles do nothing: the privilege model, the trail and the policies describe sql/. */
  readonly bundleDir: string;
  readonly log: (line: string) => void;
}

const applied = (bundles: Awaited<ReturnType<typeof applyBundles>>) =>
  bundles.map((b) => `applied ${b.kind} bundle ${b.name}${b.status === "changed" ? " (changed)" : ""}`);

/** What the local stack does for each step of the plan. */
function localActions(state: StackState, opts: LocalPlanOptions): PlanActions<string> {
  const urls = () => outputsOf(state).connections;
  const firstRun = () => !state.primaryBootstrapped;
  const ours = opts.bundleDir === REPO_BUNDLE_DIR;
  return {
    roles: async () => {
      if (firstRun()) await createRoles(state);
      // Every role back to the model (attributes, settings, passwords): what a role changed itself is repaired.
      return convergeRoles(state);
    },
    database: async () => {
      await ensureDatabase(state, firstRun());
      return [];
    },
    schema: async () => {
      if (firstRun()) await createSchema(state);
      return [];
    },
    access: async () => {
      const statements = await convergeAccess(state);
      if (firstRun()) {
        state.primaryBootstrapped = true;
        saveState(state);
        return ["created roles, database and schema"];
      }
      return statements.length > 0 ? [`brought CONNECT and schema grants in line with the privilege model (${statements.length} statements)`] : [];
    },
    bundles: async () => applied(await applyBundles({ url: urls().migrator, log: opts.log }, loadCatalog(opts.bundleDir))),
    auditTrail: async () => (ours ? ensureAuditTrail(state) : []),
    partitions: async () => {
      if (!ours) return [];
      // The partition policy (schema/tables.ts) through the same generated bundle the Pulumi stacks apply.
      const policy = applied(await applyBundles({ url: urls().migrator, log: opts.log }, [partitionMaintenanceBundle()]));
      return [...policy, ...summarizePartitionActions(await maintainPartitions(urls().migrator))];
    },
    grants: async () => {
      if (!ours) return [];
      const statements = await withClient(urls().migrator, (c) => convergeGrants(c), "nbdb-grants");
      return statements.length > 0 ? [`brought grants in line with the privilege model (${statements.length} statements)`] : [];
    },
    schedule: async () => {
      if (!ours) return [];
      const scheduled = await ensureMaintenanceSchedule(urls());
      return scheduled ? [scheduled] : [];
    },
  };
}

/** The plan as the local stack runs it on `state`'s primary; the caller decides where it pauses (`through`). */
export function localDatabasePlan(state: StackState, opts: LocalPlanOptions): PlanRun<string> {
  return new PlanRun(localActions(state, opts), (step, i) => opts.log(`database plan ${i + 1}: ${step.id} (${step.runsAs})`));
}
