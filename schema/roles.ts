// The database roles of NeuralBlitz (docs/contracts.md, "Roles"). Rendered to SQL for the local stack
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
  /**
   * Connections this role may hold on one server (-1: no limit). The limits of all login roles add up
   * to well below max_connections (200), so nb_migrator and the administrator always get in.
   */
  readonly connectionLimit?: number;
  /** Logs in only through the pooler (pg_hba.conf refuses its direct logins where the platform can tell). */
  readonly poolerOnly?: boolean;
  /** Role-level timeouts (ROLE_TIMEOUT_DEFAULTS, configurable per stack). */
  readonly timeouts?: boolean;
}

export const ROLES = [
  { name: "nb_owner", login: false, connect: false, purpose: "owns every project object; nobody logs in as it" },
  { name: "nb_audit", login: false, connect: false, purpose: "owns the GoldenDAG audit trail, its chain and their functions; nobody logs in as it, only the platform's administrator is a member" },
  { name: "nb_migrator", login: true, memberOf: ["nb_owner"], connect: true, purpose: "applies the SQL bundles", connectionLimit: 20 },
  // At least the pooler's largest pool (pooler.defaultPoolSize, at most 50) plus its reserve (5).
  { name: "nb_app", login: true, connect: true, purpose: "the application: DML under row-level security", connectionLimit: 60, poolerOnly: true, timeouts: true },
  { name: "nb_readonly", login: true, connect: true, purpose: "reporting: SELECT only, under row-level security", connectionLimit: 40, timeouts: true },
  { name: "nb_auditor", login: true, connect: true, purpose: "reads the audit trail and runs its verification", connectionLimit: 30, poolerOnly: true },
  { name: "nb_pgbouncer", login: true, connect: true, purpose: "the pooler's auth_query lookup, nothing else", connectionLimit: 5, poolerOnly: true },
  { name: "nb_replicator", login: true, replication: true, connect: false, purpose: "streaming replication for the replicas", connectionLimit: 20 },
  // The metrics exporter: PostgreSQL's statistics views (pg_monitor) and the project's metric function, nothing else.
  { name: "nb_monitor", login: true, memberOf: ["pg_monitor"], connect: true, purpose: "the metrics exporter: pg_monitor's statistics and the audit sealer's lag", connectionLimit: 5 },
] as const satisfies readonly RoleSpec[];

export type RoleName = (typeof ROLES)[number]["name"];
export type LoginRoleName = Extract<(typeof ROLES)[number], { login: true }>["name"];

export const LOGIN_ROLES: readonly LoginRoleName[] = ROLES.filter((r) => r.login).map((r) => r.name as LoginRoleName);

/** The roles pg_hba.conf admits only from the pooler. */
export const POOLER_ONLY_ROLES: readonly string[] = ROLES.filter((r) => "poolerOnly" in r && r.poolerOnly).map((r) => r.name);

/** The pooler's own login: it runs the auth_query lookup, and no client uses it. */
export const POOLER_LOOKUP_LOGIN = "nb_pgbouncer";

/** The logins clients use through the pooler only (nb_app, nb_auditor): the pooler-only roles but the pooler's own. */
export type PooledLogin = Exclude<Extract<(typeof ROLES)[number], { poolerOnly: true }>["name"], typeof POOLER_LOOKUP_LOGIN>;
export const POOLED_LOGINS: readonly PooledLogin[] = POOLER_ONLY_ROLES.filter((r) => r !== POOLER_LOOKUP_LOGIN) as PooledLogin[];

/** Role-level timeouts, in milliseconds (0 = none): what a client gets unless it sets its own, per transaction. */
export interface RoleTimeouts {
  /** statement_timeout: a runaway query ends. */
  readonly statementMs: number;
  /** lock_timeout: a statement waiting for a lock gives up (e.g. behind a stuck LOCK TABLE). */
  readonly lockMs: number;
  /** idle_in_transaction_session_timeout: a session idle inside a transaction is ended, releasing its locks. */
  readonly idleInTransactionMs: number;
}

export type TimedRole = "nb_app" | "nb_readonly";

/** Defaults for every stack (the local stack uses these; Pulumi stacks may override with the `timeouts` config key). */
export const ROLE_TIMEOUT_DEFAULTS: Readonly<Record<TimedRole, RoleTimeouts>> = {
  // Requests of an online application: seconds, not minutes.
  nb_app: { statementMs: 15_000, lockMs: 5_000, idleInTransactionMs: 10_000 },
  // Reports may scan more; they take no locks that writers wait for, but must not sit idle either.
  nb_readonly: { statementMs: 120_000, lockMs: 5_000, idleInTransactionMs: 30_000 },
};

/** The role-level settings a role must have, and nothing else. */
export function roleSettings(role: RoleSpec, timeouts: Readonly<Record<TimedRole, RoleTimeouts>> = ROLE_TIMEOUT_DEFAULTS): Record<string, string> {
  if (!role.timeouts) return {};
  const t = timeouts[role.name as TimedRole];
  if (!t) return {};
  return {
    statement_timeout: `${t.statementMs}ms`,
    lock_timeout: `${t.lockMs}ms`,
    idle_in_transaction_session_timeout: `${t.idleInTransactionMs}ms`,
  };
}

/**
 * SQL that brings a role's role-level settings to exactly `roleSettings(role)`: every other setting
 * (one the role gave itself, e.g. ALTER ROLE nb_app SET default_transaction_read_only = on, in any
 * database) is removed. One statement list, to run in one transaction.
 */
export function roleSettingsSql(role: RoleSpec, timeouts: Readonly<Record<TimedRole, RoleTimeouts>> = ROLE_TIMEOUT_DEFAULTS): string {
  const name = ident(role.name);
  const sets = Object.entries(roleSettings(role, timeouts)).map(([k, v]) => `ALTER ROLE ${name} SET ${k} = '${v}';`);
  const perDatabase =
    `DO $$ DECLARE d text; BEGIN FOR d IN SELECT db.datname FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database db ON db.oid = s.setdatabase ` +
    `WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = '${role.name}') LOOP ` +
    `EXECUTE pg_catalog.format('ALTER ROLE ${name} IN DATABASE %I RESET ALL', d); END LOOP; END $$;`;
  return [perDatabase, `ALTER ROLE ${name} RESET ALL;`, ...sets].join("\n");
}

/** An SQL identifier: bare when it is a plain lower-case name, quoted otherwise. */
export function ident(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/**
 * Idempotent SQL that creates a role or brings its attributes in line, given its SCRAM verifier
 * (never a plain password). Used by the local stack; the Pulumi stacks declare Role resources
 * from the same ROLES list.
 */
/**
 * `bySuperuser: false` (RDS's master user): ALTER ROLE leaves out SUPERUSER, REPLICATION and BYPASSRLS,
 * which PostgreSQL lets only a superuser name, even to turn them off; such an administrator cannot
 * have turned them on either.
 */
export function roleSql(
  role: RoleSpec,
  scramVerifier?: string,
  timeouts: Readonly<Record<TimedRole, RoleTimeouts>> = ROLE_TIMEOUT_DEFAULTS,
  opts: { readonly bySuperuser?: boolean } = {},
): string {
  const bySuperuser = opts.bySuperuser ?? true;
  const attrs = [
    role.login ? "LOGIN" : "NOLOGIN",
    bySuperuser ? (role.replication ? "REPLICATION" : "NOREPLICATION") : "",
    bySuperuser ? "NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT" : "NOCREATEDB NOCREATEROLE INHERIT",
    `CONNECTION LIMIT ${role.connectionLimit ?? -1}`,
    // A password never expires silently (VALID UNTIL set by anyone is undone).
    "VALID UNTIL 'infinity'",
    scramVerifier ? `PASSWORD '${scramVerifier}'` : "",
  ].filter(Boolean).join(" ");
  const create = `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '${role.name}') THEN CREATE ROLE ${ident(role.name)}; END IF; END $$;`;
  const grants = (role.memberOf ?? []).map((g) => `GRANT ${ident(g)} TO ${ident(role.name)};`);
  return [create, `ALTER ROLE ${ident(role.name)} WITH ${attrs};`, ...grants, roleSettingsSql(role, timeouts)].join("\n");
}
