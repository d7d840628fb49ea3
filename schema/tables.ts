// The tables of the NeuralBlitz schema and what later code needs to know about each: whether it
// holds a user's data (row-level security on user_id), how it is partitioned, whether rows change
// (updated_at trigger) and whether its changes are written to the GoldenDAG audit trail.
// Grants, verification, seed and tests read this instead of repeating table names.

export type PartitionPeriod = "day" | "week" | "month";

/** What happens to a partition past its retention: dropped, or detached (renamed `<partition>_archived`). */
export type RetentionAction = "drop" | "detach";

export interface Retention {
  readonly days: number;
  readonly action: RetentionAction;
}

/**
 * How a table is partitioned and its partition policy: `premake` partitions of `period` exist ahead
 * of the current one; partitions older than `retention` are retired (none: kept forever). These are
 * the defaults of every stack; a Pulumi stack may override premake and retention days per table
 * (`partitions.<table>.premake`, `partitions.<table>.retentionDays`, infra/config.ts). Every platform
 * writes them to neuralblitz.partition_policies with one generated bundle
 * (infra/database/partitionMaintenance.ts).
 */
export interface Partitioning {
  readonly key: string;
  readonly period: PartitionPeriod;
  readonly premake: number;
  readonly retention?: Retention;
}

/** The range of `premake` (periods ahead) a policy may have; the config refuses others. */
export const PREMAKE_RANGE = { min: 1, max: 52 } as const;
/** The range of a retention in days (ten years at most). */
export const RETENTION_DAYS_RANGE = { min: 1, max: 3650 } as const;

export interface TableSpec {
  readonly name: string;
  readonly purpose: string;
  /** Holds a user's rows: carries `user_id uuid not null`, RLS enabled and forced. */
  readonly userData: boolean;
  /** Rows are updated in place; `updated_at` is kept by a trigger. */
  readonly mutable: boolean;
  readonly partitioning?: Partitioning;
  /** Changes are appended to golden_dag_audit; when false, `notAuditedBecause` says why. */
  readonly audited: boolean;
  readonly notAuditedBecause?: string;
}

export const TABLES = [
  { name: "users", purpose: "accounts and authentication", userData: true, mutable: true, audited: true },
  { name: "api_keys", purpose: "API authentication and rate limiting", userData: true, mutable: true, audited: true },
  { name: "partner_configs", purpose: "third-party partner configurations", userData: true, mutable: true, audited: true },
  { name: "quantum_neurons", purpose: "current neuron state", userData: true, mutable: true, audited: true },
  {
    name: "quantum_neuron_history",
    purpose: "every neuron state change",
    userData: true,
    mutable: false,
    partitioning: { key: "changed_at", period: "week", premake: 4, retention: { days: 730, action: "detach" } },
    audited: false,
    notAuditedBecause: "written only by the quantum_neurons trigger, whose change is itself audited: auditing it would record every change twice",
  },
  { name: "reality_networks", purpose: "multi-reality network configurations", userData: true, mutable: true, audited: true },
  { name: "reality_nodes", purpose: "nodes within networks", userData: true, mutable: true, audited: true },
  { name: "consciousness_records", purpose: "consciousness evolution", userData: true, mutable: true, audited: true },
  {
    name: "consciousness_snapshots",
    purpose: "point-in-time consciousness states",
    userData: true,
    mutable: false,
    partitioning: { key: "captured_at", period: "month", premake: 3 },
    audited: false,
    notAuditedBecause: "append-only, high-volume point-in-time copies; each snapshot is itself the record of what was captured",
  },
  {
    name: "golden_dag_audit",
    purpose: "immutable hash-chained audit trail",
    userData: false,
    mutable: false,
    partitioning: { key: "recorded_at", period: "month", premake: 3 },
    audited: false,
    notAuditedBecause: "it is the audit trail",
  },
  {
    name: "metrics",
    purpose: "time-series metrics",
    userData: false,
    mutable: false,
    partitioning: { key: "ts", period: "day", premake: 7, retention: { days: 90, action: "drop" } },
    audited: false,
    notAuditedBecause: "machine-generated at high volume (millions of rows a day); an entry per sample would multiply the write cost and bury the trail",
  },
  { name: "monitoring_alerts", purpose: "alert rules and their firing state", userData: false, mutable: true, audited: true },
] as const satisfies readonly TableSpec[];

export type TableName = (typeof TABLES)[number]["name"];

export const VIEWS = ["user_activity_view", "consciousness_metrics_view", "reality_status_view"] as const;
export const MATERIALIZED_VIEWS = ["metrics_hourly"] as const;

export const PARTITIONED_TABLES: readonly (TableSpec & { partitioning: Partitioning })[] = (TABLES as readonly TableSpec[]).filter(
  (t): t is TableSpec & { partitioning: Partitioning } => t.partitioning !== undefined,
);
export const USER_DATA_TABLES: readonly TableName[] = TABLES.filter((t) => t.userData).map((t) => t.name);
export const MUTABLE_TABLES: readonly TableName[] = TABLES.filter((t) => t.mutable).map((t) => t.name);

export type PartitionedTableName = Extract<(typeof TABLES)[number], { partitioning: Partitioning }>["name"];

/** One table's policy as the database holds it (neuralblitz.partition_policies). */
export interface PartitionPolicy {
  readonly table: PartitionedTableName;
  readonly period: PartitionPeriod;
  readonly premake: number;
  readonly retention: Retention | null;
}

/** What a stack may change of a table's policy (infra/config.ts `partitions.<table>.*`). */
export interface PartitionOverride {
  readonly premake?: number;
  readonly retentionDays?: number;
}

/**
 * Every partitioned table's policy: the defaults above with a stack's overrides. A retention can
 * only be changed where the table has one (a table kept forever has no action to apply).
 */
export function partitionPolicies(overrides: Partial<Readonly<Record<PartitionedTableName, PartitionOverride>>> = {}): PartitionPolicy[] {
  return PARTITIONED_TABLES.map((t) => {
    const name = t.name as PartitionedTableName;
    const own = overrides[name] ?? {};
    const { retention } = t.partitioning;
    if (own.retentionDays !== undefined && !retention) throw new Error(`${name} keeps its partitions forever (schema/tables.ts): it takes no retentionDays`);
    return {
      table: name,
      period: t.partitioning.period,
      premake: own.premake ?? t.partitioning.premake,
      retention: retention ? { days: own.retentionDays ?? retention.days, action: retention.action } : null,
    };
  });
}
