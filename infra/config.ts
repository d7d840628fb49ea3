// The stack's configuration: the ONE place that reads Pulumi config. Everything is validated before
// any resource is registered, and every bad key is reported at once with its value, what is allowed
// and the command that fixes it.
//
// Review stacks (`review-<x>`) have no settings of their own to keep in sync: they start from
// Pulumi.dev.yaml, read from disk, and their own config (usually none) overrides it key by key.
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import * as pulumi from "@pulumi/pulumi";
import { POOLER_DEFAULTS, PoolMode } from "./topology/pgbouncerIni";
import { ROLE_TIMEOUT_DEFAULTS, RoleTimeouts, TimedRole } from "../schema/roles";
import { PARTITIONED_TABLES, PREMAKE_RANGE, PartitionOverride, PartitionPolicy, PartitionedTableName, RETENTION_DAYS_RANGE, partitionPolicies } from "../schema/tables";
import { connectionBudgetProblem } from "./topology/connectionBudget";
import { POOLED_LOGINS } from "./platform/types";
import { PGBOUNCER_IMAGE, PINNED_IMAGE, POSTGRES_EXPORTER_IMAGE, POSTGRES_IMAGES, TAGGED_IMAGE, imageTag, PGBOUNCER_EXPORTER_LOCAL_REPOSITORY, pgbouncerExporterImageBuild } from "./platform/images";

export const PROJECT = "neuralblitz-db";
/** Fixed so that replica slots and senders never need the primary's restart when scaling. */
export const MAX_REPLICAS = 5;
/** The host ports a Docker stack's config may fix (docker.primaryPort and the others); the replica ports run up to base + MAX_REPLICAS. */
export const DOCKER_HOST_PORTS = { min: 1024, max: 65535 - MAX_REPLICAS } as const;
export const POSTGRES_VERSIONS = ["15", "16", "17"] as const;
export type PostgresVersion = (typeof POSTGRES_VERSIONS)[number];
const PLATFORMS = ["docker", "aws", "local"] as const;
const RDS_MAX_CONNECTIONS = 5000;
// Not "statement": it ends every transaction after one statement, which breaks withUser() and SET LOCAL.
const POOL_MODES: readonly PoolMode[] = ["transaction", "session"];
const DEV_CONFIG_FILE = path.join(__dirname, "..", "Pulumi.dev.yaml");
/** `review-` plus up to 13 characters keeps the longest suffixed AWS name within 32 characters. */
const REVIEW_STACK = /^review-[a-z0-9]+(-[a-z0-9]+)*$/;
const REVIEW_STACK_MAX_LENGTH = 20;

export interface PoolerConfig {
  readonly poolMode: PoolMode;
  readonly maxClientConnections: number;
  readonly defaultPoolSize: number;
}

/** Every partitioned table's policy: schema/tables.ts's defaults with `partitions.<table>.*`. */
export type PartitionConfig = readonly PartitionPolicy[];

/** The `local` platform: the servers as processes of the machine running `pulumi up` (infra/platform/local.ts). */
export interface LocalConfig {
  /** Where the local stacks live (NBDB_HOME); absent: nbdb's own default, so `nbdb --stack pulumi-<stack>` finds them. */
  readonly home?: string;
}

export interface DockerConfig {
  /** Host ports to publish on 127.0.0.1; absent lets Docker choose a free one. */
  readonly primaryPort?: number;
  /** Replica i is published on replicaBasePort + i. */
  readonly replicaBasePort?: number;
  readonly poolerPort?: number;
  /** Each server's memory limit, which its settings are sized for. */
  readonly nodeMemoryMb: number;
  readonly nodeCpus: number;
  /**
   * Create this stack's primary as another Docker stack on the same host was at a point in time,
   * from that stack's pgBackRest repository volume; read only when the primary's volume is empty.
   */
  readonly restoreFrom?: DockerRestoreFrom;
  /**
   * docker.dataVolumes, normalized: which role's data volume each server container mounts, only the
   * entries that differ from the role itself (`{ primary: "replica-1", "replica-1": "primary" }`
   * after a switchover to replica-1); an empty object when the key only holds identity entries,
   * absent when the stack has no key (every container on its own volume, as before the key existed).
   * Written by `nbdb switchover`/`failover`; read it through mountedVolume().
   */
  readonly dataVolumes?: Readonly<Partial<Record<ServerRole, ServerRole>>>;
}

/** A server container's role, which names its container and its data volume. */
export type ServerRole = "primary" | `replica-${number}`;

/** The server roles of a stack with `replicas` replicas, the primary first. */
export function serverRoles(replicas: number): ServerRole[] {
  return ["primary", ...Array.from({ length: replicas }, (_, i) => `replica-${i}` as const)];
}

/** The role whose data volume the container of `role` mounts (its own unless docker.dataVolumes says otherwise). */
export function mountedVolume(docker: Pick<DockerConfig, "dataVolumes">, role: ServerRole): ServerRole {
  return docker.dataVolumes?.[role] ?? role;
}

export interface DockerRestoreFrom {
  /** The source stack's name (a Pulumi stack of this project on the same Docker host). */
  readonly stack: string;
  /** The source's physical suffix (its volumes', stanza's and containers' names end with it). */
  readonly sourceSuffix: string;
  /** A UTC time (2026-12-01T22:30:00Z), or "latest": every WAL segment the source archived. */
  readonly time: string;
}

export interface AwsConfig {
  readonly region: string;
  readonly instanceClass: string;
  readonly allocatedStorageGb: number;
  readonly maxAllocatedStorageGb: number;
  readonly backupRetentionDays: number;
  readonly multiAz: boolean;
  readonly vpcId: string;
  readonly subnetIds: readonly string[];
  /** Networks allowed to reach the servers and the pooler. */
  readonly allowedCidrs: readonly string[];
  readonly poolerTasks: number;
  /** RDS instance changes at once (true) or in the weekly maintenance window, showing as drift until then. */
  readonly applyImmediately: boolean;
  /**
   * Create this stack's primary as another RDS instance was at a point in time (RDS point-in-time
   * recovery); read only when the primary is created.
   */
  readonly restoreFrom?: AwsRestoreFrom;
  /** CloudWatch alarms on the RDS instances (docs/monitoring.md). */
  readonly alarms: AwsAlarmConfig;
}

/** Thresholds of the CloudWatch alarms; every alarm fires after `evaluationMinutes` minutes over its threshold. */
export interface AwsAlarmConfig {
  /** ReplicaLag of any read replica, seconds. */
  readonly replicaLagSeconds: number;
  /** FreeStorageSpace of any instance below this, GiB. */
  readonly freeStorageGb: number;
  /** DatabaseConnections of any instance above this share of max_connections, percent. */
  readonly connectionsPercent: number;
  /** MaximumUsedTransactionIDs of the primary above this (wraparound comes at about 2.1 billion). */
  readonly maxUsedTransactionIds: number;
  readonly evaluationMinutes: number;
  /** An SNS topic the alarms notify; none: the alarms only change state. */
  readonly topicArn?: string;
}

export const ALARM_DEFAULTS = {
  replicaLagSeconds: 60,
  freeStorageGb: 10,
  connectionsPercent: 80,
  maxUsedTransactionIds: 1_000_000_000,
  evaluationMinutes: 5,
} as const;

export interface AwsRestoreFrom {
  /** The source RDS instance identifier (e.g. nbdb-primary). */
  readonly source: string;
  /** A UTC time (2026-12-01T22:30:00Z), or "latest" for the latest restorable time. */
  readonly time: string;
}

/** Image references: `<name>:<tag>@sha256:<digest>`, or (unprotected stacks only) `<name>:<tag>`. */
export interface ImageConfig {
  readonly postgres: string;
  readonly pgbouncer: string;
  /** Docker stacks only: PostgreSQL's metrics exporter (docs/monitoring.md). */
  readonly postgresExporter: string;
  /**
   * PgBouncer's metrics exporter (Docker and AWS): a reference to run instead of the image the
   * program builds (infra/platform/pgbouncerExporterImage/); absent, the program builds it.
   */
  readonly pgbouncerExporter?: string;
}

interface CommonConfig {
  readonly stack: string;
  readonly review: boolean;
  /** Appended to every physical name: `-<stack>` on review stacks, so they sit beside dev. */
  readonly nameSuffix: string;
  readonly replicas: number;
  readonly postgresVersion: PostgresVersion;
  /** Protect the data (Pulumi `protect`, RDS deletion protection, final snapshot). */
  readonly deletionProtection: boolean;
  readonly pooler: PoolerConfig;
  readonly partitions: PartitionConfig;
  /** Role-level timeouts of nb_app and nb_readonly (schema/roles.ts; defaults ROLE_TIMEOUT_DEFAULTS). */
  readonly timeouts: Readonly<Record<TimedRole, RoleTimeouts>>;
  readonly images: ImageConfig;
  /**
   * The key of the encrypted columns, a secret of the stack's config; absent: generated per stack
   * (infra/credentials.ts). Required on a stack restored from another, whose data the source's key encrypted.
   */
  readonly dataKey?: string;
}

export type StackConfig = CommonConfig &
  (
    | { readonly platform: "docker"; readonly docker: DockerConfig }
    | { readonly platform: "aws"; readonly aws: AwsConfig }
    | { readonly platform: "local"; readonly local: LocalConfig }
  );

type Values = Record<string, unknown>;

const TOP_LEVEL_KEYS = ["platform", "replicas", "postgresVersion", "deletionProtection", "pooler", "partitions", "timeouts", "images", "dataKey", "docker", "aws", "local"];
const TIMED_ROLES: readonly TimedRole[] = ["nb_app", "nb_readonly"];
const TIMEOUT_KEYS = ["statementMs", "lockMs", "idleInTransactionMs"] as const;

/** `timeouts.<role>.<statementMs|lockMs|idleInTransactionMs>`, each 0 (none) to 24 h, defaults from schema/roles.ts. */
function timeoutsConfig(p: Problems, v: unknown): Record<TimedRole, RoleTimeouts> {
  const all = object(p, "timeouts", v, TIMED_ROLES, false);
  return Object.fromEntries(
    TIMED_ROLES.map((role) => {
      const own = object(p, `timeouts.${role}`, all[role], TIMEOUT_KEYS, false);
      const t = Object.fromEntries(TIMEOUT_KEYS.map((k) => [k, integer(p, `timeouts.${role}.${k}`, own[k], 0, 86_400_000, ROLE_TIMEOUT_DEFAULTS[role][k])]));
      return [role, t as unknown as RoleTimeouts];
    }),
  ) as Record<TimedRole, RoleTimeouts>;
}
/**
 * `partitions.<table>.premake` and `partitions.<table>.retentionDays`, per partitioned table; what a
 * stack leaves unset is schema/tables.ts's policy. Only a table that retires partitions takes a retention.
 */
function partitionsConfig(p: Problems, v: unknown): PartitionConfig {
  const tables = PARTITIONED_TABLES.map((t) => t.name as PartitionedTableName);
  const all = object(p, "partitions", v, tables, false);
  const overrides: Partial<Record<PartitionedTableName, PartitionOverride>> = {};
  for (const t of PARTITIONED_TABLES) {
    const name = t.name as PartitionedTableName;
    const keys = t.partitioning.retention ? ["premake", "retentionDays"] : ["premake"];
    const own = object(p, `partitions.${name}`, all[name], keys, false);
    overrides[name] = {
      premake: optionalInteger(p, `partitions.${name}.premake`, own.premake, PREMAKE_RANGE.min, PREMAKE_RANGE.max),
      retentionDays: keys.includes("retentionDays") ? optionalInteger(p, `partitions.${name}.retentionDays`, own.retentionDays, RETENTION_DAYS_RANGE.min, RETENTION_DAYS_RANGE.max) : undefined,
    };
  }
  return partitionPolicies(overrides);
}
const DOCKER_PORT_KEYS = ["primaryPort", "replicaBasePort", "poolerPort"];
const DOCKER_KEYS = [...DOCKER_PORT_KEYS, "nodeMemoryMb", "nodeCpus", "restoreFrom", "dataVolumes"];
const DOCKER_RESTORE_KEYS = ["stack", "time"];
/** Docker keys about the stack's own volumes, which a review stack never takes from dev. */
const DOCKER_OWN_KEYS = ["restoreFrom", "dataVolumes"];
/** A Pulumi stack name. */
const STACK_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const AWS_KEYS = [
  "region", "instanceClass", "allocatedStorageGb", "maxAllocatedStorageGb", "backupRetentionDays", "multiAz",
  "vpcId", "subnetIds", "allowedCidrs", "poolerTasks", "applyImmediately", "restoreFrom", "alarms",
];
const ALARM_KEYS = ["replicaLagSeconds", "freeStorageGb", "connectionsPercent", "maxUsedTransactionIds", "evaluationMinutes", "topicArn"];
const SNS_TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-\d:\d{12}:[A-Za-z0-9_-]{1,256}$/;

function alarmConfig(p: Problems, v: unknown): AwsAlarmConfig {
  const a = object(p, "aws.alarms", v, ALARM_KEYS, false);
  const d = ALARM_DEFAULTS;
  return {
    replicaLagSeconds: integer(p, "aws.alarms.replicaLagSeconds", a.replicaLagSeconds, 1, 86_400, d.replicaLagSeconds),
    freeStorageGb: integer(p, "aws.alarms.freeStorageGb", a.freeStorageGb, 1, 65_536, d.freeStorageGb),
    connectionsPercent: integer(p, "aws.alarms.connectionsPercent", a.connectionsPercent, 1, 100, d.connectionsPercent),
    maxUsedTransactionIds: integer(p, "aws.alarms.maxUsedTransactionIds", a.maxUsedTransactionIds, 1_000_000, 2_000_000_000, d.maxUsedTransactionIds),
    evaluationMinutes: integer(p, "aws.alarms.evaluationMinutes", a.evaluationMinutes, 1, 60, d.evaluationMinutes),
    ...(a.topicArn !== undefined ? { topicArn: text(p, "aws.alarms.topicArn", a.topicArn, SNS_TOPIC_ARN, "an SNS topic ARN such as arn:aws:sns:eu-west-1:123456789012:nbdb-alarms") } : {}),
  };
}
const RESTORE_KEYS = ["source", "time"];

/** What every physical name of a stack ends with: `-<stack>` on review stacks, so they sit beside dev. */
export function physicalSuffix(stack: string): string {
  return stack.startsWith("review-") ? `-${stack}` : "";
}
/** RDS's longest backup retention: no point in time older than this can be restored. */
const MAX_BACKUP_RETENTION_DAYS = 35;
/** A protected (production) stack keeps at least a week of point-in-time recovery. */
const MIN_PROTECTED_RETENTION_DAYS = 7;
const RDS_IDENTIFIER = /^[a-z](?!.*--)[a-z0-9-]{0,62}(?<!-)$/;

/** Collects every problem, so one `pulumi up` reports all of them. */
class Problems {
  readonly list: string[] = [];

  add(key: string, value: unknown, allowed: string): void {
    this.push(key, value, allowed, "set", `${key} <value>`);
  }

  /** A key the program does not know (a typo?): the fix removes it. */
  unknown(key: string, value: unknown, known: readonly string[]): void {
    this.push(key, value, `unknown key; known keys: ${known.join(", ")}`, "rm", key);
  }

  /** A key this stack may not have at all: the fix removes it. */
  refused(key: string, value: unknown, why: string): void {
    this.push(key, value, why, "rm", key);
  }

  /** A value whose fix is no config edit: `fix` says what to run instead. */
  blocked(key: string, value: unknown, why: string, fix: string): void {
    this.list.push(`${PROJECT}:${key} = ${this.shown(key, value)}: ${why} (fix: ${fix})`);
  }

  private push(key: string, value: unknown, allowed: string, verb: "set" | "rm", args: string): void {
    const path = key.includes(".") ? "--path " : "";
    this.list.push(`${PROJECT}:${key} = ${this.shown(key, value)}: ${allowed} (fix: pulumi config ${verb} ${path}${args})`);
  }

  private shown(key: string, value: unknown): string {
    return value === undefined ? "(unset)" : isSecretKey(key) ? "[secret]" : JSON.stringify(value);
  }
}

/**
 * Whether the stack holds the (top-level) key as a secret (`pulumi config set --secret`): its value
 * is never printed. The SDK's own check is internal; where it is missing, no value counts as printable.
 */
function isSecretKey(key: string): boolean {
  const check = (pulumi.runtime as unknown as { isConfigSecret?: (k: string) => boolean }).isConfigSecret;
  return typeof check !== "function" || check(`${PROJECT}:${key.split(".")[0]}`);
}

function isObject(v: unknown): v is Values {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function integer(p: Problems, key: string, v: unknown, min: number, max: number, fallback?: number): number {
  if (v === undefined && fallback !== undefined) return fallback;
  const n = typeof v === "string" && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n === "number" && Number.isInteger(n) && n >= min && n <= max) return n;
  p.add(key, v, `expected a whole number from ${min} to ${max}`);
  return min;
}

function optionalInteger(p: Problems, key: string, v: unknown, min: number, max: number): number | undefined {
  return v === undefined ? undefined : integer(p, key, v, min, max);
}

function choice<T extends string>(p: Problems, key: string, v: unknown, allowed: readonly T[], fallback?: T): T {
  if (v === undefined && fallback !== undefined) return fallback;
  const s = typeof v === "number" ? String(v) : v;
  if (typeof s === "string" && (allowed as readonly string[]).includes(s)) return s as T;
  p.add(key, v, `expected one of ${allowed.join(", ")}`);
  return allowed[0];
}

function bool(p: Problems, key: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (v === true || v === "true") return true;
  if (v === false || v === "false") return false;
  p.add(key, v, "expected true or false");
  return fallback;
}

function text(p: Problems, key: string, v: unknown, pattern: RegExp, what: string): string {
  if (typeof v === "string" && pattern.test(v)) return v;
  p.add(key, v, `expected ${what}`);
  return "";
}

function list(p: Problems, key: string, v: unknown, pattern: RegExp, what: string, minItems: number): string[] {
  if (Array.isArray(v) && v.length >= minItems && v.every((s) => typeof s === "string" && pattern.test(s))) return v as string[];
  p.add(key, v, `expected a list of at least ${minItems} ${what}`);
  return [];
}

/** An object with only known keys; a typo is reported instead of silently ignored. */
function object(p: Problems, key: string, v: unknown, known: readonly string[], required: boolean): Values {
  if (v === undefined && !required) return {};
  if (!isObject(v)) {
    p.add(key, v, `expected an object with keys ${known.join(", ")}`);
    return {};
  }
  for (const k of Object.keys(v).filter((k) => !known.includes(k))) p.unknown(`${key}.${k}`, v[k], known);
  return v;
}

/** Pulumi hands scalars over as strings and structured values as JSON text. */
function parseConfigValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function ownValues(): Values {
  const prefix = `${PROJECT}:`;
  return Object.fromEntries(
    Object.entries(pulumi.runtime.allConfig())
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]) => [k.slice(prefix.length), parseConfigValue(v)]),
  );
}

/** The project's directory, where each stack's Pulumi.<stack>.yaml is. */
export const PROJECT_DIR = path.join(__dirname, "..");

/** A stack's settings as its Pulumi.<stack>.yaml declares them, read as a file (no Pulumi engine needed); undefined when there is no such file. */
export function stackFileValues(stack: string, root: string = PROJECT_DIR): Values | undefined {
  const file = path.join(root, `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(file)) return undefined;
  let doc: unknown;
  try {
    doc = yaml.load(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file} could not be read: ${(e as Error).message}. Fix its YAML (it is the stack's Pulumi config file), or restore it: git checkout -- ${path.basename(file)}`);
  }
  const config = isObject(doc) && isObject(doc.config) ? doc.config : {};
  const prefix = `${PROJECT}:`;
  return Object.fromEntries(Object.entries(config).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}

/** A stack is production when its Pulumi config protects it from deletion (`deletionProtection: true`). */
export function isProtectedStack(stack: string, root: string = PROJECT_DIR): boolean {
  return stackFileValues(stack, root)?.deletionProtection === true;
}

/**
 * Dev's settings as a review stack's base; dev's published ports would clash with dev's own
 * containers, dev's restore source is dev's own history, not the review stack's, and which volume
 * each of dev's containers mounts (docker.dataVolumes) is a fact of dev's volumes alone.
 */
function devValues(): Values {
  const values = stackFileValues("dev");
  if (!values) throw new Error(`review stacks take dev's settings from ${DEV_CONFIG_FILE}, which is missing. Restore it: git checkout -- Pulumi.dev.yaml`);
  return reviewBase(values);
}

/**
 * What a review stack takes of dev's settings (`values`): all but dev's published ports, its
 * docker.restoreFrom and docker.dataVolumes, and its dataKey (a secret of dev's, which encrypts dev's data).
 */
export function reviewBase(values: Values): Values {
  const { dataKey: _dataKey, ...rest } = values;
  if (!isObject(rest.docker)) return rest;
  return { ...rest, docker: Object.fromEntries(Object.entries(rest.docker).filter(([k]) => !DOCKER_PORT_KEYS.includes(k) && !DOCKER_OWN_KEYS.includes(k))) };
}

const AWS_ID = (prefix: string) => new RegExp(`^${prefix}-[0-9a-f]{8,17}$`);
const CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/(3[0-2]|[12]?\d)$/;

/** `replicas` is the stack's replica count (MAX_REPLICAS when that key is itself invalid, so nothing counts as removed). */
function dockerConfig(p: Problems, v: unknown, stack: string, replicas: number, now = new Date()): DockerConfig {
  const d = object(p, "docker", v, DOCKER_KEYS, false);
  const port = (k: string) => optionalInteger(p, `docker.${k}`, d[k], DOCKER_HOST_PORTS.min, DOCKER_HOST_PORTS.max);
  const config = {
    primaryPort: port("primaryPort"),
    replicaBasePort: port("replicaBasePort"),
    poolerPort: port("poolerPort"),
    nodeMemoryMb: integer(p, "docker.nodeMemoryMb", d.nodeMemoryMb, 256, 65536, 1024),
    nodeCpus: integer(p, "docker.nodeCpus", d.nodeCpus, 1, 64, 2),
    ...(d.restoreFrom !== undefined ? { restoreFrom: dockerRestoreFrom(p, d.restoreFrom, stack, now) } : {}),
    ...(d.dataVolumes !== undefined ? { dataVolumes: dockerDataVolumes(p, d.dataVolumes, stack, replicas) } : {}),
  };
  const { primaryPort, replicaBasePort, poolerPort } = config;
  // The whole replica range is reserved, so scaling up never lands on the primary's or pooler's port.
  for (const [k, other] of [["primaryPort", primaryPort], ["poolerPort", poolerPort]] as const) {
    if (other !== undefined && replicaBasePort !== undefined && other >= replicaBasePort && other < replicaBasePort + MAX_REPLICAS) {
      p.add(`docker.${k}`, other, `must lie outside the replica ports ${replicaBasePort}-${replicaBasePort + MAX_REPLICAS - 1}`);
    }
  }
  if (primaryPort !== undefined && primaryPort === poolerPort) p.add("docker.poolerPort", poolerPort, "must differ from docker.primaryPort");
  return config;
}

const SERVER_ROLE = /^(primary|replica-(0|[1-9]\d*))$/;
const roleIndex = (role: string): number => (role === "primary" ? -1 : Number(role.slice("replica-".length)));
const SERVER_ROLES_TEXT = `primary or replica-<i> with i from 0 to ${MAX_REPLICAS - 1}`;

/**
 * docker.dataVolumes: role -> the role whose data volume its container mounts, as `nbdb switchover`
 * and `failover` write it (every role of the stack, identity entries included). Checked: the shape,
 * that the non-identity entries exchange volumes (a bijection: no volume mounted twice, none left
 * unmounted), and that no such entry names a role `replicas` removes (its volume would be deleted
 * with the role, though another container's data is in it). Identity entries of removed roles are
 * ignored. Returns only the non-identity entries.
 */
function dockerDataVolumes(p: Problems, v: unknown, stack: string, replicas: number): Partial<Record<ServerRole, ServerRole>> {
  const key = (role: string) => `docker.dataVolumes.${role}`;
  if (!isObject(v)) {
    p.add("docker.dataVolumes", v, `expected an object from each server role (${SERVER_ROLES_TEXT}) to the role whose data volume its container mounts; nbdb switchover and failover write it`);
    return {};
  }
  const moved = new Map<ServerRole, ServerRole>();
  for (const [k, target] of Object.entries(v)) {
    const validKey = SERVER_ROLE.test(k) && roleIndex(k) < MAX_REPLICAS;
    if (!validKey) p.refused(key(k), target, `not a server role: the keys are ${SERVER_ROLES_TEXT}`);
    if (typeof target !== "string" || !SERVER_ROLE.test(target) || roleIndex(target) >= MAX_REPLICAS) {
      p.add(key(k), target, `expected the role whose data volume the ${k} container mounts: ${SERVER_ROLES_TEXT}`);
    } else if (validKey && target !== k) {
      moved.set(k as ServerRole, target as ServerRole);
    }
  }
  // Written by nbdb in one command: anything else is a hand edit or a partial write, which the message says.
  const rewrite = `write every role's entry in one command, each volume mounted once, as nbdb switchover does: pulumi config set-all --path --plaintext 'docker.dataVolumes["primary"]=<role>' --plaintext 'docker.dataVolumes["replica-0"]=<role>' …; docker inspect <container> shows which volume each container mounts now`;
  const mountedBy = new Map<ServerRole, ServerRole[]>();
  for (const [role, target] of moved) mountedBy.set(target, [...(mountedBy.get(target) ?? []), role]);
  for (const [target, roles] of mountedBy) {
    // The target's own container still mounts it unless the target has an entry of its own.
    const mounts = moved.has(target) ? roles : [...roles, target];
    if (mounts.length > 1) {
      const own = moved.has(target) ? "" : ` (docker.dataVolumes.${target} is unset or ${target})`;
      p.blocked(key(roles[roles.length - 1]), target, `${target}'s data volume would be mounted by ${mounts.length} containers: ${mounts.join(", ")}${own}`, rewrite);
    }
  }
  for (const role of moved.keys()) {
    if (!mountedBy.has(role)) p.blocked(key(role), moved.get(role), `${role}'s own data volume would be mounted by no container: no entry names ${role}`, rewrite);
  }
  // Removing a role deletes its container and its volume: refused while either holds another role's data.
  const removed = [...new Set([...moved.keys(), ...moved.values()])].filter((role) => roleIndex(role) >= replicas).sort();
  for (const role of removed) {
    const mounts = moved.get(role);
    const holder = mountedBy.get(role)?.[0];
    const facts = [mounts && `whose container mounts ${mounts}'s data`, holder && `whose data the ${holder} container mounts`].filter(Boolean).join(" and ");
    // A switchover to X exchanges the primary's and X's volumes: first bring the removed role's data to the primary, then hand it back.
    const steps = [...(holder !== undefined && holder !== "primary" ? [holder] : []), role].map((to) => `npx nbdb switchover --pulumi-stack ${stack} --to ${to}`);
    p.blocked(
      key(mounts ? role : holder ?? role),
      mounts ?? role,
      `replicas: ${replicas} removes ${role}, ${facts}; its volume would be deleted with it`,
      `switch the primary back first (${steps.join(", then ")}), or keep ${role}: pulumi config set replicas ${roleIndex(role) + 1}`,
    );
  }
  return Object.fromEntries(moved);
}

function localConfig(p: Problems, v: unknown): LocalConfig {
  const l = object(p, "local", v, ["home"], false);
  if (l.home === undefined) return {};
  return { home: text(p, "local.home", l.home, /^\/\S*$/, "an absolute directory such as /var/tmp/nbdb") };
}

/** A restore time: UTC with seconds (`…Z`) or "latest", never in the future, at most `maxAgeDays` old where that is bounded. */
function restoreTime(p: Problems, key: string, time: unknown, now: Date, maxAgeDays?: number): string {
  if (time === "latest") return time;
  if (typeof time !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/.test(time) || Number.isNaN(Date.parse(time))) {
    p.add(key, time, 'expected a UTC time such as 2026-12-01T22:30:00Z, or "latest"');
  } else if (Date.parse(time) > now.getTime()) {
    p.add(key, time, `is in the future (now is ${now.toISOString()}); use "latest" for the newest restorable time`);
  } else if (maxAgeDays !== undefined && Date.parse(time) < now.getTime() - maxAgeDays * 86_400_000) {
    p.add(key, time, `is older than RDS keeps backups (${maxAgeDays} days at most)`);
  }
  return typeof time === "string" ? time : "";
}

function restoreFrom(p: Problems, v: unknown, now: Date): AwsRestoreFrom | undefined {
  if (v === undefined) return undefined;
  const r = object(p, "aws.restoreFrom", v, RESTORE_KEYS, true);
  const source = text(p, "aws.restoreFrom.source", r.source, RDS_IDENTIFIER, "the source RDS instance identifier, such as nbdb-primary");
  return { source, time: restoreTime(p, "aws.restoreFrom.time", r.time, now, MAX_BACKUP_RETENTION_DAYS) };
}

/**
 * docker.restoreFrom: another stack of this project whose repository volume is on this host. Its
 * physical names must differ from this stack's: a stack restored from itself (or from a stack
 * whose volumes carry the same names) would mount its own repository.
 */
function dockerRestoreFrom(p: Problems, v: unknown, stack: string, now: Date): DockerRestoreFrom {
  const r = object(p, "docker.restoreFrom", v, DOCKER_RESTORE_KEYS, true);
  const source = text(p, "docker.restoreFrom.stack", r.stack, STACK_NAME, "the name of the Docker stack to restore from, such as dev");
  if (source !== "" && physicalSuffix(source) === physicalSuffix(stack)) {
    p.add(
      "docker.restoreFrom.stack",
      source,
      source === stack
        ? "names this stack itself; a restore creates a new stack from another one (pulumi stack init <new>, then set the key there)"
        : `names a stack whose volumes have this stack's own names (nbdb-backup-repo${physicalSuffix(stack)}); restore into a review-<x> stack, which has names of its own`,
    );
  }
  return { stack: source, sourceSuffix: physicalSuffix(source), time: restoreTime(p, "docker.restoreFrom.time", r.time, now) };
}

function awsConfig(p: Problems, v: unknown, deletionProtection: boolean, now = new Date()): AwsConfig {
  const a = object(p, "aws", v, AWS_KEYS, true);
  const backupRetentionDays = integer(p, "aws.backupRetentionDays", a.backupRetentionDays, 1, MAX_BACKUP_RETENTION_DAYS, 7);
  if (deletionProtection && backupRetentionDays < MIN_PROTECTED_RETENTION_DAYS) {
    p.add("aws.backupRetentionDays", backupRetentionDays, `a protected stack (deletionProtection: true) keeps at least ${MIN_PROTECTED_RETENTION_DAYS} days of backups`);
  }
  const allocatedStorageGb = integer(p, "aws.allocatedStorageGb", a.allocatedStorageGb, 20, 65536);
  const maxAllocatedStorageGb = integer(p, "aws.maxAllocatedStorageGb", a.maxAllocatedStorageGb, 20, 65536, allocatedStorageGb);
  if (maxAllocatedStorageGb < allocatedStorageGb) {
    p.add("aws.maxAllocatedStorageGb", maxAllocatedStorageGb, `must be at least aws.allocatedStorageGb (${allocatedStorageGb})`);
  }
  return {
    region: text(p, "aws.region", a.region, /^[a-z]{2}(-[a-z]+)+-\d$/, "an AWS region such as eu-west-1"),
    instanceClass: text(p, "aws.instanceClass", a.instanceClass, /^db\.[a-z0-9-]+\.[a-z0-9]+$/, "an RDS instance class such as db.r6g.xlarge"),
    allocatedStorageGb,
    maxAllocatedStorageGb,
    backupRetentionDays,
    multiAz: bool(p, "aws.multiAz", a.multiAz, true),
    vpcId: text(p, "aws.vpcId", a.vpcId, AWS_ID("vpc"), "a VPC id such as vpc-0a1b2c3d4e5f60718"),
    // An RDS subnet group must span at least two availability zones.
    subnetIds: list(p, "aws.subnetIds", a.subnetIds, AWS_ID("subnet"), "subnet ids (subnet-…) in different availability zones", 2),
    allowedCidrs: list(p, "aws.allowedCidrs", a.allowedCidrs, CIDR, "IPv4 CIDR blocks such as 10.20.0.0/16", 1),
    poolerTasks: integer(p, "aws.poolerTasks", a.poolerTasks, 1, 10, 2),
    applyImmediately: bool(p, "aws.applyImmediately", a.applyImmediately, true),
    ...(a.restoreFrom !== undefined ? { restoreFrom: restoreFrom(p, a.restoreFrom, now) } : {}),
    alarms: alarmConfig(p, a.alarms),
  };
}

/**
 * The images: a digest-pinned reference, or a tag where nothing is protected; the PostgreSQL image's
 * tag must be of the stack's major version.
 */
function imageConfig(p: Problems, v: unknown, protect: boolean, postgresVersion: PostgresVersion, platform: string): ImageConfig {
  const i = object(p, "images", v, ["postgres", "pgbouncer", "postgresExporter", "pgbouncerExporter"], false);
  const ref = (key: "postgres" | "pgbouncer" | "postgresExporter" | "pgbouncerExporter", fallback: string): string => {
    const value = i[key] ?? fallback;
    // RDS runs no PostgreSQL image and no PostgreSQL exporter container: only a given one is checked, for its form.
    const pinRequired = protect && !((key === "postgres" || key === "postgresExporter") && platform === "aws");
    if (typeof value === "string" && PINNED_IMAGE.test(value)) return value;
    if (typeof value === "string" && TAGGED_IMAGE.test(value) && !pinRequired) return value;
    const inspect = `docker buildx imagetools inspect ${typeof value === "string" && TAGGED_IMAGE.test(value) ? value : fallback} (the Digest line)`;
    // The exporter's default is the program's own build, which no registry holds: there is nothing to look up but the stack's own push.
    const lookup = key === "pgbouncerExporter" ? `${inspect}, or remove images.pgbouncerExporter to have the program build the image (pulumi config rm --path images.pgbouncerExporter)` : inspect;
    p.add(
      `images.${key}`,
      i[key],
      pinRequired
        ? `a protected stack (deletionProtection) runs images pinned by digest: <name>:<tag>@sha256:<digest>; look it up with ${lookup}`
        : `expected <name>:<tag> or <name>:<tag>@sha256:<digest>; look a digest up with ${lookup}`,
    );
    return fallback;
  };
  const postgres = ref("postgres", POSTGRES_IMAGES[postgresVersion]);
  const major = /^(\d+)/.exec(imageTag(postgres))?.[1];
  if (i.postgres !== undefined && major !== undefined && major !== postgresVersion) {
    p.add("images.postgres", i.postgres, `its tag is PostgreSQL ${major}, but postgresVersion is ${postgresVersion}`);
  }
  // The PgBouncer exporter has no default reference: absent, the program builds the image (by digest on AWS).
  const pgbouncerExporter = i.pgbouncerExporter === undefined ? undefined : ref("pgbouncerExporter", `${PGBOUNCER_EXPORTER_LOCAL_REPOSITORY}:${pgbouncerExporterImageBuild().tag}`);
  return {
    postgres,
    pgbouncer: ref("pgbouncer", PGBOUNCER_IMAGE),
    postgresExporter: ref("postgresExporter", POSTGRES_EXPORTER_IMAGE),
    ...(pgbouncerExporter !== undefined ? { pgbouncerExporter } : {}),
  };
}

/** `own` over `base`, key by key, nested objects included (a review stack's own docker.poolerPort keeps dev's docker.nodeCpus). */
function overlay(base: Values, own: Values): Values {
  const merged: Values = { ...base };
  for (const [k, v] of Object.entries(own)) merged[k] = isObject(v) && isObject(base[k]) ? overlay(base[k] as Values, v) : v;
  return merged;
}

function checkStackName(p: Problems, stack: string, review: boolean): void {
  if (review && (!REVIEW_STACK.test(stack) || stack.length > REVIEW_STACK_MAX_LENGTH)) {
    p.list.push(
      `stack name '${stack}': a review stack is named review-<x> with lower-case letters, digits and single hyphens, ` +
        `at most ${REVIEW_STACK_MAX_LENGTH} characters (e.g. review-123), so that every suffixed name stays valid; ` +
        `fix: pulumi stack rename review-<pr number>`,
    );
  }
}

/** Read and validate the current stack's config; throws one error listing every problem. */
export function loadConfig(): StackConfig {
  const stack = pulumi.getStack();
  const review = stack.startsWith("review-");
  const values: Values = review ? overlay(devValues(), ownValues()) : ownValues();
  const p = new Problems();
  checkStackName(p, stack, review);
  for (const k of Object.keys(values).filter((k) => !TOP_LEVEL_KEYS.includes(k))) {
    p.unknown(k, values[k], TOP_LEVEL_KEYS);
  }
  const pooler = object(p, "pooler", values.pooler, ["poolMode", "maxClientConnections", "defaultPoolSize"], false);
  const deletionProtection = bool(p, "deletionProtection", values.deletionProtection, false);
  if (review && deletionProtection) p.add("deletionProtection", true, "review stacks are always destroyable; remove the key");
  const postgresVersion = choice(p, "postgresVersion", values.postgresVersion, POSTGRES_VERSIONS, "15");
  const platform = choice(p, "platform", values.platform, PLATFORMS);
  const problemsBefore = p.list.length;
  const replicas = integer(p, "replicas", values.replicas, 0, MAX_REPLICAS, 1);
  const replicasValid = p.list.length === problemsBefore;
  const common: CommonConfig = {
    stack,
    review,
    nameSuffix: physicalSuffix(stack),
    replicas,
    postgresVersion,
    deletionProtection,
    images: imageConfig(p, values.images, deletionProtection, postgresVersion, platform),
    pooler: {
      poolMode: choice(p, "pooler.poolMode", pooler.poolMode, POOL_MODES, POOLER_DEFAULTS.poolMode),
      maxClientConnections: integer(p, "pooler.maxClientConnections", pooler.maxClientConnections, 1, 100000, POOLER_DEFAULTS.maxClientConnections),
      // Each pooled login gets a pool of this size in every PgBouncer process; the servers' max_connections follows (connectionBudget.ts).
      defaultPoolSize: integer(p, "pooler.defaultPoolSize", pooler.defaultPoolSize, 1, 50, POOLER_DEFAULTS.defaultPoolSize),
    },
    timeouts: timeoutsConfig(p, values.timeouts),
    partitions: partitionsConfig(p, values.partitions),
    ...(values.dataKey !== undefined ? { dataKey: dataKeyConfig(p, values.dataKey) } : {}),
  };
  const config: StackConfig =
    platform === "docker"
      ? { ...common, platform, docker: dockerConfig(p, values.docker, stack, replicasValid ? replicas : MAX_REPLICAS) }
      : platform === "local"
        ? { ...common, platform, local: localConfig(p, values.local) }
        : { ...common, platform, aws: awsConfig(p, values.aws, deletionProtection) };
  // The local platform's servers are a local stack, whose every `nbdb up` writes schema/tables.ts's
  // policy with the same generated bundle: an override here would be undone by the next one.
  if (platform === "local" && values.partitions !== undefined) {
    p.refused("partitions", values.partitions, "the local platform keeps the local stack's partition policy (schema/tables.ts), which nbdb up applies");
  }
  checkRestoredDataKey(p, config);
  checkConnectionBudget(p, config);
  if (p.list.length > 0) {
    throw new Error(`invalid config for stack '${stack}' (${p.list.length} problem${p.list.length > 1 ? "s" : ""}):\n  - ${p.list.join("\n  - ")}`);
  }
  return deepFreeze(config);
}

const DATA_KEY = /^[\x21-\x7e]{32,1024}$/;

/** `dataKey`: 32 to 1024 printable characters without spaces, set as a secret (its value is never printed). */
function dataKeyConfig(p: Problems, v: unknown): string | undefined {
  if (typeof v === "string" && DATA_KEY.test(v)) return v;
  p.add("dataKey", v, "must be 32 to 1024 printable characters without spaces, set as a secret (pulumi config set --secret dataKey ...)");
  return undefined;
}

/**
 * A stack restored from another holds rows whose encrypted columns the source's key encrypted: a
 * generated key of its own could read none of them, so the stack must be given that key.
 */
function checkRestoredDataKey(p: Problems, config: StackConfig): void {
  if (config.dataKey !== undefined) return;
  const source =
    config.platform === "docker" && config.docker.restoreFrom
      ? { key: "docker.restoreFrom", read: `pulumi stack output --stack ${config.docker.restoreFrom.stack} --show-secrets dataKey` }
      : config.platform === "aws" && config.aws.restoreFrom
        ? { key: "aws.restoreFrom", read: `pulumi stack output --stack <the stack of ${config.aws.restoreFrom.source}> --show-secrets dataKey` }
        : undefined;
  if (!source) return;
  p.add(
    "dataKey",
    undefined,
    `${source.key} restores rows whose encrypted columns the source stack's data key encrypted; give this stack that key (a stack restored earlier that has written rows with its own key since: its own, pulumi stack output --show-secrets dataKey). ` +
      `The fix: pulumi config set --secret dataKey "$(${source.read})"; the fix below is its short form`,
  );
}

/**
 * max_connections follows from the pooler's settings; refuse what a server cannot hold: RDS's own
 * ceiling, or on Docker 2 MB of the node's memory per connection (a backend's baseline).
 */
function checkConnectionBudget(p: Problems, config: StackConfig): void {
  // The local platform runs the local stack's own pooler and servers, sized by nbdb (scripts/local/).
  if (config.platform === "local") return;
  const processes = config.platform === "aws" ? config.aws.poolerTasks : 1;
  const footprint = { processes, pooledLogins: POOLED_LOGINS.length, defaultPoolSize: config.pooler.defaultPoolSize };
  const problem =
    config.platform === "aws"
      ? connectionBudgetProblem(footprint, RDS_MAX_CONNECTIONS, "RDS allows by default (LEAST(DBInstanceClassMemory/9531392, 5000))")
      : connectionBudgetProblem(footprint, Math.floor(config.docker.nodeMemoryMb / 2), `a server of docker.nodeMemoryMb = ${config.docker.nodeMemoryMb} holds (2 MB each)`);
  if (problem) p.add("pooler.defaultPoolSize", config.pooler.defaultPoolSize, problem);
}

function deepFreeze<T>(o: T): T {
  if (typeof o === "object" && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
