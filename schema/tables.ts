// The tables of the NeuralBlitz schema and what later code needs to know about each: whether it
// holds a user's data (row-level security on user_id), how it is partitioned, whether rows change
// (updated_at trigger) and whether its changes are written to the GoldenDAG audit trail.
// Grants, verification, seed and tests read this instead of repeating table names.

export type PartitionPeriod = "day" | "week" | "month";

export interface Partitioning {
  readonly key: string;
  readonly period: PartitionPeriod;
}

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
    partitioning: { key: "changed_at", period: "week" },
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
    partitioning: { key: "captured_at", period: "month" },
    audited: false,
    notAuditedBecause: "append-only, high-volume point-in-time copies; each snapshot is itself the record of what was captured",
  },
  {
    name: "golden_dag_audit",
    purpose: "immutable hash-chained audit trail",
    userData: false,
    mutable: false,
    partitioning: { key: "recorded_at", period: "month" },
    audited: false,
    notAuditedBecause: "it is the audit trail",
  },
  {
    name: "metrics",
    purpose: "time-series metrics",
    userData: false,
    mutable: false,
    partitioning: { key: "ts", period: "day" },
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
