// The database layer as one ordered plan, free of Pulumi and of processes: what is set up on a
// stack's primary once its servers run, step by step, who runs each step and where its SQL comes
// from. This is the ONE place the order lives. Two executors follow it:
//
//   - the local stack (`nbdb up`): scripts/local/database.ts runs each step in-process
//     (`localDatabasePlan`, through runPlan below), as the role the step names;
//   - the Pulumi stacks: infra/database/layer.ts maps each step to resources, each step's resources
//     depending on the previous step's, so the engine runs them in this order.
//
// Tests hold both to it: test/databasePlan.test.ts runs the local executor against a real server,
// test/pulumi.database.test.ts checks the layer's dependency order under Pulumi mocks.
//
// Why this order:
//   - roles first: everything else names them (owners, grantees, the pooler's lookup);
//   - the database is taken over (owned by nb_owner) before its schema, which nb_owner owns too;
//   - CONNECT and schema USAGE/CREATE before the bundles: nb_migrator needs CONNECT once PUBLIC has
//     lost it, and nb_audit needs USAGE/CREATE on the schema for the audit trail's objects;
//   - the bundles create the tables and functions every later step works on;
//   - the audit trail's trust boundary after the bundles (it takes over their trail tables) and
//     before partitions (the trail's partitions are made by nb_audit's golden_dag_premake());
//   - the partition policy and its first maintenance before the table grants: maintenance needs
//     none of them (it takes back whatever default privileges give a partition, which is reached
//     through its parent only), and the grants step then compares the objects this run leaves;
//   - table and function grants once every object they name exists;
//   - the schedule last: its jobs call the functions the bundles made, as the role granted above.

/** The steps, in order. */
export const PLAN_STEP_IDS = ["roles", "database", "schema", "access", "bundles", "auditTrail", "partitions", "grants", "schedule"] as const;
export type PlanStepId = (typeof PLAN_STEP_IDS)[number];

export interface PlanStep {
  readonly id: PlanStepId;
  readonly what: string;
  /** Who runs it: the platform's administrator (local: the superuser postgres; Docker: its superuser; RDS: the master user), or a project role. */
  readonly runsAs: string;
  /** The renderers that produce its SQL, as `file (export)`; test/databasePlan.test.ts checks each exists. */
  readonly sql: readonly string[];
}

export const DATABASE_PLAN: readonly PlanStep[] = [
  {
    id: "roles",
    what: "every role of schema/roles.ts with its attributes, membership, connection limit, SCRAM password and role-level settings (timeouts)",
    runsAs: "the administrator",
    sql: ["schema/roles.ts (roleSql)", "schema/roles.ts (roleSettingsSql)", "infra/topology/scram.ts (scramSha256Verifier)"],
  },
  {
    id: "database",
    what: "the database neuralblitz, owned by nb_owner (created locally, taken over where the platform made it), database postgres closed to project roles, the pooler's password lookup",
    runsAs: "the administrator",
    sql: ["infra/database/adminSetup.ts (adminSetupSql)", "infra/topology/pgbouncerAuth.ts (pgbouncerAuthSql)"],
  },
  {
    id: "schema",
    what: "the schema neuralblitz owned by nb_owner; PUBLIC loses CREATE on schema public",
    runsAs: "the administrator",
    sql: ["schema/roles.ts (SCHEMA)"],
  },
  {
    id: "access",
    what: "CONNECT on the database and USAGE/CREATE on the schema from the privilege model; PUBLIC loses CONNECT and TEMPORARY",
    runsAs: "the administrator, as nb_owner",
    sql: ["schema/privileges.ts (grantSql)", "schema/privileges.ts (revokeSql)"],
  },
  {
    id: "bundles",
    what: "the SQL bundles of sql/ (migrations, then repeatable bundles), through the bundle engine",
    runsAs: "nb_migrator, SET LOCAL ROLE nb_owner",
    sql: ["infra/bundles/catalog.ts (loadCatalog)", "infra/bundles/applier.ts (applyBundles)"],
  },
  {
    id: "auditTrail",
    what: "the audit trail's trust boundary (sql/admin/golden_dag_trail.sql) when its version is not installed, and the grants on the trail's objects",
    runsAs: "the administrator, as nb_audit",
    sql: ["infra/topology/auditTrail.ts (auditTrailSql)"],
  },
  {
    id: "partitions",
    what: "the partition policy of schema/tables.ts (with a Pulumi stack's overrides) and partition maintenance: partitions ahead, strays moved, retention",
    runsAs: "nb_migrator, SET LOCAL ROLE nb_owner",
    sql: ["infra/database/partitionMaintenance.ts (partitionMaintenanceBundle)"],
  },
  {
    id: "grants",
    what: "the table and function grants and default privileges of the privilege model",
    runsAs: "the administrator (Pulumi) or nb_migrator (local), as nb_owner",
    sql: ["schema/privileges.ts (grantSql)", "schema/privileges.ts (defaultPrivilegeSql)"],
  },
  {
    id: "schedule",
    what: "the scheduled jobs (maintenance, the audit sealer) in pg_cron, which every platform preloads (Docker: the image the program builds)",
    runsAs: "nb_migrator (the jobs' role), after the administrator made pg_cron usable by it",
    sql: ["infra/topology/maintenanceSchedule.ts (cronAccessSql)", "infra/topology/maintenanceSchedule.ts (maintenanceScheduleSql)"],
  },
];

/** What an executor does for each step; the record type makes it name every step. */
export type PlanActions<T> = { readonly [K in PlanStepId]: () => Promise<T[]> };

/**
 * Runs a plan's steps in order, each once. `through(id)` runs every step not run yet up to and
 * including `id` (an executor may stop between steps to do other work, never reorder them);
 * `onStep` hears each step as it starts. Returns what the steps reported.
 */
export class PlanRun<T> {
  private next = 0;
  readonly ran: PlanStepId[] = [];

  constructor(
    private readonly actions: PlanActions<T>,
    private readonly onStep: (step: PlanStep, index: number) => void = () => undefined,
  ) {}

  async through(id: PlanStepId): Promise<T[]> {
    const end = DATABASE_PLAN.findIndex((s) => s.id === id);
    const reported: T[] = [];
    for (; this.next <= end; this.next++) {
      const step = DATABASE_PLAN[this.next];
      this.onStep(step, this.next);
      reported.push(...(await this.actions[step.id]()));
      this.ran.push(step.id);
    }
    return reported;
  }
}
