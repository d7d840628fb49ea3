// The shared server settings as an RDS parameter group: only the settings RDS lets us change, in the
// units RDS expects, static ones applied at the next reboot. Memory and worker sizing are left to RDS,
// whose defaults are formulas of the instance class and so follow a resize.
import { DATABASE } from "../../schema/roles";
import { MAX_REPLICAS } from "../config";
import { Settings, serverSettings } from "../topology/postgresSettings";

export interface RdsParameter {
  readonly name: string;
  readonly value: string;
  readonly applyMethod: "immediate" | "pending-reboot";
}

type Unit = "MB" | "s";

const RDS_TAKES: Readonly<Record<string, { readonly static: boolean; readonly unit?: Unit }>> = {
  max_connections: { static: true },
  max_wal_senders: { static: true },
  max_replication_slots: { static: true },
  shared_preload_libraries: { static: true },
  track_commit_timestamp: { static: true },
  wal_keep_size: { static: false, unit: "MB" },
  max_slot_wal_keep_size: { static: false, unit: "MB" },
  max_wal_size: { static: false, unit: "MB" },
  checkpoint_timeout: { static: false, unit: "s" },
  hot_standby_feedback: { static: false },
  password_encryption: { static: false },
  random_page_cost: { static: false },
  log_min_duration_statement: { static: false },
  log_parameter_max_length: { static: false },
  log_parameter_max_length_on_error: { static: false },
};

const TO_MB: Record<string, number> = { kB: 1 / 1024, MB: 1, GB: 1024, TB: 1024 * 1024 };
const TO_S: Record<string, number> = { ms: 1 / 1000, s: 1, min: 60, h: 3600, d: 86400 };

/** "8GB" → "8192" (MB), "15min" → "900" (s), on/off → 1/0 (what RDS reports back, so no diff). */
function rdsValue(name: string, v: string | number | undefined, unit?: Unit): string {
  if (v === undefined) throw new Error(`infra/platform/rdsParameters.ts maps ${name}, which the shared server settings no longer set`);
  if (v === "on" || v === "off") return v === "on" ? "1" : "0";
  if (!unit || typeof v === "number") return String(v);
  const m = /^(\d+)\s*([a-zA-Z]+)$/.exec(v);
  const factor = m && (unit === "MB" ? TO_MB : TO_S)[m[2]];
  if (!m || !factor) throw new Error(`cannot express ${name} = '${v}' in ${unit} for RDS; add its unit to infra/platform/rdsParameters.ts`);
  return String(Math.round(Number(m[1]) * factor));
}

/** `maxConnections`: from the connection budget of the stack's pooler (infra/topology/connectionBudget.ts). */
export function rdsParameters(maxConnections: number): RdsParameter[] {
  // The sizing argument only feeds settings RDS_TAKES leaves out.
  const shared: Settings = serverSettings({ memoryBytes: 0, cpus: 1 }, MAX_REPLICAS, { maxConnections });
  const fromShared = Object.entries(RDS_TAKES).map(([name, rule]) => ({
    name,
    value: rdsValue(name, shared[name], rule.unit),
    applyMethod: rule.static ? ("pending-reboot" as const) : ("immediate" as const),
  }));
  const preload = fromShared.find((p) => p.name === "shared_preload_libraries")!;
  return [
    ...fromShared.filter((p) => p !== preload),
    // pg_cron schedules partition maintenance in deployed stacks; it runs its jobs in our database.
    { ...preload, value: `${preload.value},pg_cron` },
    { name: "cron.database_name", value: DATABASE, applyMethod: "pending-reboot" },
    { name: "rds.force_ssl", value: "1", applyMethod: "immediate" },
  ];
}
