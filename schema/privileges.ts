// The privilege model: who may do what on which object, with every privilege named. It is the
// single source for the local stack (rendered to GRANT/REVOKE by scripts/local/grants.ts), the
// Pulumi stacks (@pulumi/postgresql Grant and DefaultPrivileges resources, infra/database/grants.ts), `nbdb verify` and
// `nbdb grants diff`. Row-level security then decides which rows (sql/repeatable/R060).
import { DATABASE, ROLES, RoleName, SCHEMA, ident } from "./roles";
import { TABLES, TableName, VIEWS, MATERIALIZED_VIEWS } from "./tables";

export type Privilege = "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" | "REFERENCES" | "TRIGGER" | "EXECUTE" | "USAGE" | "CREATE" | "CONNECT" | "TEMPORARY";
export type ObjectType = "database" | "schema" | "table" | "function";

/** One role's privileges on one object. `object` is a table/view name or a function signature. */
export interface GrantSpec {
  readonly role: RoleName;
  readonly objectType: ObjectType;
  readonly object: string;
  readonly privileges: readonly Privilege[];
}

/** The role that creates (and owns) every project object, whose default privileges the model sets. */
export const OBJECT_OWNER = "nb_owner";

/**
 * The role that owns the GoldenDAG audit trail (sql/admin/golden_dag_trail.sql): its tables and the
 * functions that write or check them. Grants on them are made as it, by the platform's administrator.
 */
export const TRAIL_OWNER = "nb_audit";
export const TRAIL_TABLES: readonly string[] = ["golden_dag_audit", "golden_dag_seals", "golden_dag_head", "golden_dag_archives"];

/** Whether an object of the model belongs to the audit trail (nb_audit's), not to nb_owner. */
export function isTrailObject(objectType: ObjectType, object: string): boolean {
  if (objectType === "table") return TRAIL_TABLES.includes(object) || /^golden_dag_audit_/.test(object);
  if (objectType === "function") return /^(golden_dag_|seal_golden_dag\(|verify_golden_dag\(|verify_golden_dag_since\(|archive_golden_dag_partition\()/.test(object);
  return false;
}

/** Privileges nb_owner's future objects in the schema give a role (ALTER DEFAULT PRIVILEGES). */
export interface DefaultPrivilegeSpec {
  readonly role: RoleName;
  readonly objectType: "table" | "function";
  readonly privileges: readonly Privilege[];
}

const S = "SELECT" as const;
const I = "INSERT" as const;
const U = "UPDATE" as const;
const D = "DELETE" as const;

/** What the application may do per table: only the DML each one needs. */
const APP_TABLE_PRIVILEGES: Record<TableName, readonly Privilege[]> = {
  users: [S, I, U], // accounts are soft-deleted (status, deleted_at)
  api_keys: [S, I, U, D],
  partner_configs: [S, I, U, D],
  quantum_neurons: [S, I, U, D],
  quantum_neuron_history: [S, I], // appended by the quantum_neurons trigger, as the writer; never changed
  reality_networks: [S, I, U, D],
  reality_nodes: [S, I, U, D],
  consciousness_records: [S, I, U, D],
  consciousness_snapshots: [S, I], // point-in-time copies are never changed
  golden_dag_audit: [], // appended by triggers only; nb_app neither reads nor writes it
  metrics: [S, I],
  monitoring_alerts: [S, I, U],
};

/** Functions by signature as PostgreSQL prints it (regprocedure, without the schema). */
export const FUNCTIONS = {
  currentUserId: "current_user_id()",
  setUserContext: "set_user_context(uuid,text)",
  changeNeuronState: "change_neuron_state(uuid,bigint,jsonb,double precision,double precision,double precision)",
  encryptSecret: "encrypt_secret(text)",
  decryptSecret: "decrypt_secret(bytea)",
  lookupHash: "lookup_hash(text)",
  verifyGoldenDag: "verify_golden_dag()",
  verifyGoldenDagSince: "verify_golden_dag_since(bigint,bytea)",
  sealGoldenDag: "seal_golden_dag(interval,interval,interval)",
  archiveGoldenDagPartition: "archive_golden_dag_partition(text)",
  goldenDagVerifySql: "golden_dag_verify_sql(text)",
  goldenDagChecksSql: "golden_dag_checks_sql(text,text,text)",
  goldenDagSealLag: "golden_dag_seal_lag()",
  goldenDagVerifySinceSql: "golden_dag_verify_since_sql(text)",
  goldenDagEntriesSql: "golden_dag_entries_sql()",
  goldenDagCanonical: "golden_dag_canonical(bigint,timestamp with time zone,text,text,jsonb,text,uuid,jsonb,jsonb,bigint)",
} as const;

const READABLE_BY_READONLY = [...TABLES.map((t) => t.name).filter((t) => t !== "golden_dag_audit"), ...VIEWS, ...MATERIALIZED_VIEWS];

export const GRANTS: readonly GrantSpec[] = [
  ...ROLES.filter((r) => r.connect).map((r): GrantSpec => ({ role: r.name, objectType: "database", object: DATABASE, privileges: ["CONNECT"] })),
  ...(["nb_app", "nb_readonly", "nb_auditor", "nb_monitor"] as const).map((role): GrantSpec => ({ role, objectType: "schema", object: SCHEMA, privileges: ["USAGE"] })),
  // The trail's owner holds its objects in the project schema (sql/admin/golden_dag_trail.sql).
  { role: "nb_audit", objectType: "schema", object: SCHEMA, privileges: ["USAGE", "CREATE"] },

  ...Object.entries(APP_TABLE_PRIVILEGES)
    .filter(([, privileges]) => privileges.length > 0)
    .map(([object, privileges]): GrantSpec => ({ role: "nb_app", objectType: "table", object, privileges })),
  ...[...VIEWS, ...MATERIALIZED_VIEWS].map((object): GrantSpec => ({ role: "nb_app", objectType: "table", object, privileges: [S] })),
  ...[FUNCTIONS.currentUserId, FUNCTIONS.setUserContext, FUNCTIONS.changeNeuronState, FUNCTIONS.encryptSecret, FUNCTIONS.decryptSecret, FUNCTIONS.lookupHash].map(
    (object): GrantSpec => ({ role: "nb_app", objectType: "function", object, privileges: ["EXECUTE"] }),
  ),

  ...READABLE_BY_READONLY.map((object): GrantSpec => ({ role: "nb_readonly", objectType: "table", object, privileges: [S] })),
  // Row-level security policies call current_user_id() with the reader's rights.
  { role: "nb_readonly", objectType: "function", object: FUNCTIONS.currentUserId, privileges: ["EXECUTE"] },
  // withUser({ readOnly }) names the user (and key) for its transaction on a replica.
  { role: "nb_readonly", objectType: "function", object: FUNCTIONS.setUserContext, privileges: ["EXECUTE"] },

  { role: "nb_auditor", objectType: "table", object: "golden_dag_audit", privileges: [S] },
  { role: "nb_auditor", objectType: "table", object: "golden_dag_seals", privileges: [S] },
  { role: "nb_auditor", objectType: "table", object: "golden_dag_head", privileges: [S] },
  { role: "nb_auditor", objectType: "table", object: "golden_dag_archives", privileges: [S] },
  { role: "nb_auditor", objectType: "function", object: FUNCTIONS.verifyGoldenDag, privileges: ["EXECUTE"] },
  // So that a verification first chains what has committed since the last scheduled run.
  { role: "nb_auditor", objectType: "function", object: FUNCTIONS.sealGoldenDag, privileges: ["EXECUTE"] },
  // verify_golden_dag() runs with the auditor's rights (no SECURITY DEFINER needed) and recomputes hashes with it.
  { role: "nb_auditor", objectType: "function", object: FUNCTIONS.goldenDagCanonical, privileges: ["EXECUTE"] },
  { role: "nb_auditor", objectType: "function", object: FUNCTIONS.goldenDagVerifySql, privileges: ["EXECUTE"] },
  // The checks the full and the incremental verification share (both query builders call it).
  { role: "nb_auditor", objectType: "function", object: FUNCTIONS.goldenDagChecksSql, privileges: ["EXECUTE"] },
  // Incremental verification since a recorded head (nbdb audit verify --since-head), with the same rights.
  ...[FUNCTIONS.verifyGoldenDagSince, FUNCTIONS.goldenDagVerifySinceSql, FUNCTIONS.goldenDagEntriesSql].map(
    (object): GrantSpec => ({ role: "nb_auditor", objectType: "function", object, privileges: ["EXECUTE"] }),
  ),
  // Archiving a partition of the trail is an operator's act.
  { role: "nb_migrator", objectType: "function", object: FUNCTIONS.archiveGoldenDagPartition, privileges: ["EXECUTE"] },
  // The exporter's one look at the trail: how many entries wait for the sealer, and for how long (counts, no content).
  { role: "nb_monitor", objectType: "function", object: FUNCTIONS.goldenDagSealLag, privileges: ["EXECUTE"] },
];

/**
 * Tables nb_owner creates later are readable by reporting at once (partitions excepted: partition
 * maintenance takes that back, since partitions are reached through their parent only). Writes
 * and functions are granted only by name, here.
 */
export const DEFAULT_PRIVILEGES: readonly DefaultPrivilegeSpec[] = [{ role: "nb_readonly", objectType: "table", privileges: [S] }];

/** The roles whose privileges on project objects the model decides completely (besides PUBLIC, which gets none). */
export const MANAGED_GRANTEES: readonly RoleName[] = ROLES.map((r) => r.name).filter((r) => r !== "nb_owner");

/** One (role, object, privilege) triple per privilege: the unit grants are compared in. */
export interface PrivilegeTriple {
  readonly role: string;
  readonly objectType: ObjectType;
  readonly object: string;
  readonly privilege: Privilege;
}

export function tripleKey(t: PrivilegeTriple): string {
  return `${t.role}|${t.objectType}|${t.object}|${t.privilege}`;
}

export function triplesOf(grants: readonly GrantSpec[] = GRANTS): PrivilegeTriple[] {
  return grants.flatMap((g) => g.privileges.map((privilege) => ({ role: g.role, objectType: g.objectType, object: g.object, privilege })));
}

/**
 * A grant as every renderer takes it: the GRANT/REVOKE statements of the local stack and the
 * @pulumi/postgresql Grant resources both start here, so they cannot disagree on where an object
 * lives or how it is named.
 */
export interface GrantStatement<P extends string = Privilege> {
  readonly role: string;
  readonly objectType: ObjectType;
  readonly database: string;
  /** The schema holding the objects, or the schema granted on; none for a database grant. */
  readonly schema?: string;
  /** Tables/views by name, functions by signature; none for a database or schema grant. */
  readonly objects: readonly string[];
  readonly privileges: readonly P[];
}

type GrantTarget = Omit<GrantStatement<string>, "role" | "privileges">;

/** Where an object of the model lives: its database, its schema, its name there. */
function grantTarget(objectType: ObjectType, object: string): GrantTarget {
  switch (objectType) {
    case "database":
      return { objectType, database: object, objects: [] };
    case "schema":
      return { objectType, database: DATABASE, schema: object, objects: [] };
    case "table":
    case "function":
      return { objectType, database: DATABASE, schema: SCHEMA, objects: [object] };
  }
}

export function grantStatement<P extends string>(g: { readonly role: string; readonly objectType: ObjectType; readonly object: string; readonly privileges: readonly P[] }): GrantStatement<P> {
  return { role: g.role, privileges: g.privileges, ...grantTarget(g.objectType, g.object) };
}

/** The objects of a statement as SQL names them in GRANT/REVOKE. */
function targetSql(s: GrantTarget): string {
  switch (s.objectType) {
    case "database":
      return `DATABASE ${ident(s.database)}`;
    case "schema":
      return `SCHEMA ${ident(s.schema!)}`;
    case "table":
      return `TABLE ${s.objects.map((o) => `${ident(s.schema!)}.${ident(o)}`).join(", ")}`;
    case "function":
      return `FUNCTION ${s.objects.map((o) => `${ident(s.schema!)}.${o}`).join(", ")}`;
  }
}

/** The object as SQL names it in GRANT/REVOKE. */
export function objectSql(objectType: ObjectType, object: string): string {
  return targetSql(grantTarget(objectType, object));
}

type Renderable = Pick<PrivilegeTriple, "objectType" | "object" | "role"> & { privileges: readonly string[] };

function grantee(role: string): string {
  return role === "PUBLIC" ? "PUBLIC" : ident(role);
}

export function grantSql(t: Renderable): string {
  return `GRANT ${t.privileges.join(", ")} ON ${targetSql(grantStatement(t))} TO ${grantee(t.role)}`;
}

export function revokeSql(t: Renderable): string {
  return `REVOKE ${t.privileges.join(", ")} ON ${targetSql(grantStatement(t))} FROM ${grantee(t.role)}`;
}

export function defaultPrivilegeSql(d: DefaultPrivilegeSpec): string {
  return `ALTER DEFAULT PRIVILEGES FOR ROLE ${OBJECT_OWNER} IN SCHEMA ${SCHEMA} GRANT ${d.privileges.join(", ")} ON ${d.objectType === "table" ? "TABLES" : "FUNCTIONS"} TO ${ident(d.role)}`;
}

/**
 * A stable, readable resource name for a grant: who gets privileges on which object. The
 * privileges are deliberately not part of it: a changed privilege list must update the Grant in
 * place (one transaction), not create a new Grant and delete the old one afterwards, whose REVOKE
 * would take back the privileges the two share.
 */
export function grantName(g: Pick<GrantSpec, "role" | "objectType" | "object">): string {
  const object = g.object.replace(/\(.*$/, "");
  return `${g.role}-on-${g.objectType}-${object}`.replace(/_/g, "-");
}
