// The database roles of NeuralBlitz (DESIGN.md, "Contracts"). Rendered to SQL for the local stack
// and to @pulumi/postgresql Role resources for the deployed stacks.

export const DATABASE = "neuralblitz";
export const SCHEMA = "neuralblitz";

export interface RoleSpec {
  readonly name: string;
  readonly login: boolean;
  readonly replication?: boolean;
  readonly memberOf?: readonly string[];
  readonly connect: boolean;
  readonly purpose: string;
}

export const ROLES = [
  { name: "nb_owner", login: false, connect: false, purpose: "owns every project object; nobody logs in as it" },
  { name: "nb_audit", login: false, connect: false, purpose: "owns the GoldenDAG audit trail, its chain and their functions; nobody logs in as it, only the platform's administrator is a member" },
  { name: "nb_migrator", login: true, memberOf: ["nb_owner"], connect: true, purpose: "applies the SQL bundles" },
  { name: "nb_app", login: true, connect: true, purpose: "the application: DML under row-level security" },
  { name: "nb_readonly", login: true, connect: true, purpose: "reporting: SELECT only, under row-level security" },
  { name: "nb_auditor", login: true, connect: true, purpose: "reads the audit trail and runs its verification" },
  { name: "nb_pgbouncer", login: true, connect: true, purpose: "the pooler's auth_query lookup, nothing else" },
  { name: "nb_replicator", login: true, replication: true, connect: false, purpose: "streaming replication for the replicas" },
] as const satisfies readonly RoleSpec[];

export type RoleName = (typeof ROLES)[number]["name"];
export type LoginRoleName = Extract<(typeof ROLES)[number], { login: true }>["name"];

export const LOGIN_ROLES: readonly LoginRoleName[] = ROLES.filter((r) => r.login).map((r) => r.name as LoginRoleName);

/** An SQL identifier: bare when it is a plain lower-case name, quoted otherwise. */
export function ident(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/**
 * Idempotent SQL that creates a role or brings its attributes in line, given its SCRAM verifier
 * (never a plain password). Used by the local stack; the Pulumi stacks declare Role resources
 * from the same ROLES list.
 */
export function roleSql(role: RoleSpec, scramVerifier?: string): string {
  const attrs = [
    role.login ? "LOGIN" : "NOLOGIN",
    role.replication ? "REPLICATION" : "NOREPLICATION",
    "NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT",
    scramVerifier ? `PASSWORD '${scramVerifier}'` : "",
  ].filter(Boolean).join(" ");
  const create = `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '${role.name}') THEN CREATE ROLE ${ident(role.name)}; END IF; END $$;`;
  const grants = (role.memberOf ?? []).map((g) => `GRANT ${ident(g)} TO ${ident(role.name)};`);
  return [create, `ALTER ROLE ${ident(role.name)} WITH ${attrs};`, ...grants].join("\n");
}
