// `nbdb seed`: realistic, deterministic development data in every table. Bulk rows go in with
// COPY (pg-copy-streams); the business tables in one transaction, metrics one day per
// transaction, the two at the same time on two connections (each is a server process of its own,
// so they load on two cores) and each ANALYZEd on its connection when loaded. A re-run first removes the previous seed data (users named seed_*, metrics from
// seed-* sources, alert rules seed-*), so it replaces and never duplicates; data that is not the
// seed's stays. Seed data goes in as nb_migrator (acting as nb_owner, no user context), so its
// audit entries name nb_migrator. The audit trail follows from the triggers.
import * as fs from "fs";
import * as path from "path";
import { Readable } from "stream";
import { pipeline } from "stream/promises";
import { Client } from "pg";
import { withClient, withTransaction } from "../db";
import { from as copyFrom } from "pg-copy-streams";
import { isProtectedStack } from "../../infra/config";
import { TABLES } from "../../schema/tables";
import { UserError } from "../errors";
import { readDataKey, readOutputs, stackDir } from "../local/state";
import { Reporter, progressReporter } from "./progress";
import { Random, copyLine, passwordHash, pgArray, pick, seededRandom, sha256Hex, uuid } from "./seedData";

const DAY = 86_400_000;
const USER_TABLES = TABLES.filter((t) => t.userData).map((t) => t.name);
const HISTORY_DAYS = 14;

export interface SeedOptions {
  readonly stack: string;
  readonly scale: number;
  readonly seed: number;
  /** The day the data ends (default today, UTC): with the seed, it fixes every row. */
  readonly asOf?: Date;
  /** Must equal the stack's name to seed a stack marked as production. */
  readonly productionStack?: string;
  /** Where progress goes (default stderr); null for none. */
  readonly progressTo?: NodeJS.WriteStream | null;
}

export interface SeedReport {
  readonly rows: Record<string, number>;
  readonly durationMs: number;
}


export function guardProduction(stack: string, productionStack?: string, root?: string): void {
  if (isProtectedStack(stack, root) && productionStack !== stack) {
    throw new UserError(
      `stack '${stack}' is marked as production (Pulumi.${stack}.yaml sets deletionProtection: true), and seeding replaces data.\n` +
        `If you really mean to seed it, say so exactly: --production-stack ${stack}`,
    );
  }
}

export function parseScale(raw: string): number {
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(n > 0) || n > 1000) throw new UserError(`--scale must be a number above 0 and at most 1000 (1 loads in seconds, 100 loads millions of metric rows), got '${raw}'.`);
  return n;
}

interface SeedUser {
  id: string;
  username: string;
  email: string;
  status: string;
  createdAt: Date;
  lastLoginAt: Date | null;
  mfaSecret: string | null;
  passwordHash: string;
}

interface Generated {
  users: SeedUser[];
  apiKeys: unknown[][];
  partners: { userId: string; partner: string; endpoint: string; credentials: string; settings: object; enabled: boolean }[];
  networks: unknown[][];
  nodes: unknown[][];
  neurons: unknown[][];
  records: unknown[][];
  snapshots: unknown[][];
  alerts: unknown[][];
}

const METRICS = ["cpu.utilization", "memory.used_bytes", "neuron.fire_rate", "network.latency_ms", "queue.depth", "api.requests", "api.errors", "consciousness.level"];
const HOSTS = Array.from({ length: 8 }, (_, i) => `node-${i + 1}`);
const REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"];
const STAGES = ["dormant", "emergent", "aware", "reflective", "transcendent"];

function generate(rand: Random, scale: number, asOf: number): Generated {
  const g: Generated = { users: [], apiKeys: [], partners: [], networks: [], nodes: [], neurons: [], records: [], snapshots: [], alerts: [] };
  const userCount = Math.max(2, Math.round(40 * scale));
  for (let u = 0; u < userCount; u++) {
    const id = uuid(rand);
    const status = rand() < 0.05 ? "deleted" : rand() < 0.1 ? "suspended" : "active";
    const createdAt = new Date(asOf - (30 + rand() * 300) * DAY);
    g.users.push({
      id,
      username: `seed_${String(u).padStart(6, "0")}`,
      email: `seed.user${u}@example.com`,
      status,
      createdAt,
      lastLoginAt: status === "active" ? new Date(asOf - rand() * 7 * DAY) : null,
      mfaSecret: rand() < 0.4 ? sha256Hex(`${id}-mfa`).slice(0, 32) : null,
      passwordHash: passwordHash(rand),
    });
    for (let k = 0; k < 2; k++) {
      const revoked = rand() < 0.2 ? new Date(asOf - rand() * 10 * DAY) : null;
      g.apiKeys.push([uuid(rand), id, k === 0 ? "default" : "ci", `seed_${String(u).padStart(6, "0")}_${k}`, `\\x${sha256Hex(`${id}:${k}:${rand()}`)}`,
        pgArray(k === 0 ? ["read", "write"] : ["read"]), k === 0 ? 600 : 120, null, revoked, revoked ? null : new Date(asOf - rand() * 2 * DAY), createdAt]);
    }
    if (rand() < 0.7) {
      g.partners.push({ userId: id, partner: pick(rand, ["acme", "globex", "initech"]), endpoint: "https://partner.example/api", credentials: `token-${sha256Hex(id).slice(0, 24)}`, settings: { retries: 3, region: pick(rand, REGIONS) }, enabled: rand() < 0.9 });
    }
    const networkIds: string[] = [];
    for (let n = 0; n < 2; n++) {
      const nid = uuid(rand);
      networkIds.push(nid);
      const dims = 3 + Math.floor(rand() * 5);
      g.networks.push([nid, id, `reality-${n + 1}`, { kind: pick(rand, ["mesh", "ring", "star"]), shards: 1 + Math.floor(rand() * 4) }, pick(rand, ["active", "active", "degraded", "provisioning"]), dims]);
      for (let k = 0; k < 4; k++) {
        const health = Math.round(rand() * 1000) / 1000;
        g.nodes.push([uuid(rand), nid, id, pgArray(Array.from({ length: dims }, () => Math.round(rand() * 1000) / 10)), health < 0.3 ? "offline" : health < 0.5 ? "degraded" : "online", health, new Date(asOf - rand() * 3600_000)]);
      }
    }
    const neuronIds: string[] = [];
    for (let q = 0; q < 8; q++) neuronIds.push(uuid(rand));
    neuronIds.forEach((qid, q) => {
      const entangled = neuronIds.filter((_, i) => i !== q && rand() < 0.15);
      g.neurons.push([qid, id, pick(rand, networkIds), `neuron-${q}`, { spin: pick(rand, ["up", "down"]), energy: Math.round(rand() * 100) }, rand(), rand() * 6.28, rand(), pgArray(entangled)]);
    });
    for (let r = 0; r < 6; r++) {
      const rid = uuid(rand);
      const recordedAt = new Date(asOf - rand() * HISTORY_DAYS * DAY);
      g.records.push([rid, id, "neuron", pick(rand, neuronIds), Math.round(rand() * 100_000) / 1000, pick(rand, STAGES), { mood: pick(rand, ["calm", "curious", "restless"]) }, recordedAt]);
      for (let s = 0; s < 3; s++) {
        g.snapshots.push([rid, id, { level: Math.round(rand() * 100), focus: Math.round(rand() * 100) / 100 }, new Date(recordedAt.getTime() + s * 3600_000)]);
      }
    }
  }
  METRICS.forEach((metric, i) => {
    for (const severity of ["warning", "critical"]) {
      const firing = rand() < 0.25;
      const firedAt = firing ? new Date(asOf - rand() * DAY) : null;
      g.alerts.push([`seed-${metric}-${severity}`, metric, ">", severity === "critical" ? 90 + i : 70 + i, severity, firing ? "firing" : "ok", firedAt, null]);
    }
  });
  return g;
}

// A metric line is its time, name, value, labels and source; all but the time and the value are one
// of a few texts, written once here (copyLine escapes them) instead of once per row.
const METRIC_FIELDS = METRICS.map((metric) => `\t${copyLine([metric]).slice(0, -1)}\t`);
const HOST_FIELDS = HOSTS.map((host, h) => `\t${copyLine([{ host, region: REGIONS[h % REGIONS.length] }, `seed-${host}`])}`);

/** Metric rows for one day, in time order (BRIN-friendly), as COPY lines in batches. */
function* metricLines(rand: Random, dayStart: number, rows: number): Generator<string> {
  const step = DAY / rows;
  let batch = "";
  for (let i = 0; i < rows; i++) {
    const ts = new Date(dayStart + i * step);
    const wave = 50 + 40 * Math.sin((ts.getTime() / DAY) * 2 * Math.PI);
    batch += ts.toISOString() + METRIC_FIELDS[i % METRICS.length] + Math.round((wave + rand() * 10) * 1000) / 1000 + HOST_FIELDS[Math.floor(i / METRICS.length) % HOSTS.length];
    if (i % 2000 === 1999) {
      yield batch;
      batch = "";
    }
  }
  if (batch) yield batch;
}

/** COPY the lines into a table, telling `onRows` how many went in as they go. */
async function copyLines(client: Client, table: string, columns: string, lines: Iterable<string>, onRows: (n: number) => void): Promise<number> {
  let sent = 0;
  const counted = function* () {
    for (const chunk of lines) {
      const n = chunk.split("\n").length - 1;
      sent += n;
      onRows(n);
      yield chunk;
    }
  };
  await pipeline(Readable.from(counted()), client.query(copyFrom(`COPY neuralblitz.${table} (${columns}) FROM STDIN`)));
  return sent;
}

async function copyInto(client: Client, report: Reporter, table: string, columns: string, lines: Iterable<string>, count: number): Promise<number> {
  const bar = report.step(table, count);
  const sent = await copyLines(client, table, columns, lines, (n) => bar.advance(n));
  bar.finish();
  return sent;
}

function chunks(rows: unknown[][]): string[] {
  return rows.map(copyLine);
}

async function removePreviousSeed(client: Client): Promise<void> {
  // Cascades to every user-data table; history and snapshots go with their user.
  await client.query(`DELETE FROM neuralblitz.users WHERE username LIKE 'seed\\_%'`);
  await client.query(`DELETE FROM neuralblitz.monitoring_alerts WHERE rule LIKE 'seed-%'`);
}

async function loadBusinessTables(client: Client, report: Reporter, g: Generated, dataKey: string, rows: Record<string, number>): Promise<void> {
  await withTransaction(client, async () => {
    await client.query("SELECT neuralblitz.set_user_context(NULL, $1)", [dataKey]);
    // Every user's rows at once, as the owner: row-level security stays enabled but stops applying
    // to the owner for this transaction only (FORCE is back before it commits, and no other
    // session sees the change; the audit trail records both ALTER TABLEs).
    await client.query("SET LOCAL ROLE nb_owner");
    for (const t of USER_TABLES) await client.query(`ALTER TABLE neuralblitz.${t} NO FORCE ROW LEVEL SECURITY`);
    await removePreviousSeed(client);
    const u = g.users;
    const users = report.step("users", u.length);
    await client.query(
      `INSERT INTO neuralblitz.users (id, username, email_encrypted, email_hmac, password_hash, mfa_secret_encrypted, status, last_login_at, created_at, deleted_at)
       SELECT id, username, neuralblitz.encrypt_secret(email), neuralblitz.lookup_hash(email), password_hash, neuralblitz.encrypt_secret(mfa),
              status, last_login_at, created_at, CASE WHEN status = 'deleted' THEN created_at + interval '20 days' END
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])
              AS t(id, username, email, password_hash, mfa, status, last_login_at, created_at)`,
      [u.map((x) => x.id), u.map((x) => x.username), u.map((x) => x.email), u.map((x) => x.passwordHash), u.map((x) => x.mfaSecret), u.map((x) => x.status), u.map((x) => x.lastLoginAt), u.map((x) => x.createdAt)],
    );
    users.advance(u.length);
    users.finish();
    rows.users = u.length;
    rows.api_keys = await copyInto(client, report, "api_keys", "id, user_id, name, key_prefix, key_hash, scopes, rate_limit_per_minute, expires_at, revoked_at, last_used_at, created_at", chunks(g.apiKeys), g.apiKeys.length);
    const p = g.partners;
    await client.query(
      `INSERT INTO neuralblitz.partner_configs (user_id, partner, endpoint, credentials_encrypted, settings, enabled)
       SELECT user_id, partner, endpoint, neuralblitz.encrypt_secret(credentials), settings, enabled
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::boolean[]) AS t(user_id, partner, endpoint, credentials, settings, enabled)`,
      [p.map((x) => x.userId), p.map((x) => x.partner), p.map((x) => x.endpoint), p.map((x) => x.credentials), p.map((x) => JSON.stringify(x.settings)), p.map((x) => x.enabled)],
    );
    rows.partner_configs = p.length;
    rows.reality_networks = await copyInto(client, report, "reality_networks", "id, user_id, name, topology, status, dimensions", chunks(g.networks), g.networks.length);
    rows.reality_nodes = await copyInto(client, report, "reality_nodes", "id, network_id, user_id, coordinates, status, health, last_heartbeat", chunks(g.nodes), g.nodes.length);
    rows.quantum_neurons = await copyInto(client, report, "quantum_neurons", "id, user_id, network_id, label, state, amplitude, phase, coherence, entangled_ids", chunks(g.neurons), g.neurons.length);
    // State changes through the optimistic-locking function's path: each writes a history row.
    const changes = report.step("quantum_neuron_history", g.neurons.length * 3);
    for (let round = 1; round <= 3; round++) {
      await client.query(
        `UPDATE neuralblitz.quantum_neurons
            SET state = state || jsonb_build_object('round', $2::int),
                amplitude = ('x' || substr(md5(id::text || $2), 1, 6))::bit(24)::int / 16777216.0,
                version = version + 1
          WHERE id = ANY($1::uuid[])`,
        [g.neurons.map((n) => n[0]), round],
      );
      changes.advance(g.neurons.length);
    }
    changes.finish();
    rows.quantum_neuron_history = g.neurons.length * 4;
    rows.consciousness_records = await copyInto(client, report, "consciousness_records", "id, user_id, subject_kind, subject_id, level, stage, attributes, recorded_at", chunks(g.records), g.records.length);
    rows.consciousness_snapshots = await copyInto(client, report, "consciousness_snapshots", "record_id, user_id, snapshot, captured_at", chunks(g.snapshots), g.snapshots.length);
    rows.monitoring_alerts = await copyInto(client, report, "monitoring_alerts", "rule, metric, condition, threshold, severity, state, fired_at, resolved_at", chunks(g.alerts), g.alerts.length);
    for (const t of USER_TABLES) await client.query(`ALTER TABLE neuralblitz.${t} FORCE ROW LEVEL SECURITY`);
  });
}

async function loadMetrics(client: Client, report: Reporter, rand: Random, scale: number, asOf: number): Promise<number> {
  const perDay = Math.max(100, Math.round((50_000 * scale) / HISTORY_DAYS));
  const bar = report.step("metrics", perDay * HISTORY_DAYS);
  let total = 0;
  await client.query(`DELETE FROM neuralblitz.metrics WHERE source LIKE 'seed-%'`);
  for (let d = HISTORY_DAYS; d >= 1; d--) {
    const dayStart = asOf - d * DAY;
    // One day per transaction: sized so a scale-100 load commits every few hundred thousand rows.
    await withTransaction(client, async () => {
      await copyLines(client, "metrics", "ts, name, value, labels, source", metricLines(rand, dayStart, perDay), (n) => bar.advance(n));
    });
    total += perDay;
  }
  bar.finish();
  return total;
}

export function seedMarkerFile(stack: string): string {
  return path.join(stackDir(stack), "seed.json");
}

/** True when a seed ran to completion on this stack (an interrupted one is replaced by the next). */
export function isSeeded(stack: string): boolean {
  return fs.existsSync(seedMarkerFile(stack));
}

export async function seed(opts: SeedOptions): Promise<SeedReport> {
  guardProduction(opts.stack, opts.productionStack);
  const outputs = readOutputs(opts.stack);
  const dataKey = readDataKey(opts.stack);
  const started = Date.now();
  const asOf = Math.floor((opts.asOf ?? new Date()).getTime() / DAY) * DAY;
  const rand = seededRandom(opts.seed);
  const generated = generate(rand, opts.scale, asOf);
  const rows: Record<string, number> = {};
  fs.rmSync(seedMarkerFile(opts.stack), { force: true });
  // As nb_migrator, never a superuser: seeding runs the owner's triggers, which must never run with
  // more rights than the owner's.
  const migrator = outputs.connections.migrator;
  // Partitions for the whole seeded range, so no row lands in a DEFAULT partition.
  await withClient(migrator, (client) =>
    client.query(
      `SELECT count(*) FROM generate_series($1::timestamptz, $2::timestamptz, interval '7 days') AS d, neuralblitz.run_partition_maintenance(d)`,
      [new Date(asOf - (HISTORY_DAYS + 1) * DAY), new Date(asOf)],
    ), "nbdb-seed");
  const report = progressReporter(opts.progressTo === undefined ? process.stderr : opts.progressTo);
  // The business tables and the metrics share no row, lock or random number (`generated` holds the
  // business rows; the metrics draw from `rand` after it), so they load at the same time and the data
  // is the same as one after the other. Both finish (or fail) before the seed returns.
  const analyze = async (client: Client, tables: readonly string[]) => {
    for (const t of tables) await client.query(`ANALYZE neuralblitz.${t}`);
  };
  const loaded = await Promise.allSettled([
    withClient(migrator, async (client) => {
      await loadBusinessTables(client, report, generated, dataKey, rows);
      await analyze(client, TABLES.map((t) => t.name).filter((t) => t !== "golden_dag_audit" && t !== "metrics"));
    }, "nbdb-seed"),
    withClient(migrator, async (client) => {
      const metrics = await loadMetrics(client, report, rand, opts.scale, asOf);
      await analyze(client, ["metrics"]);
      return metrics;
    }, "nbdb-seed-metrics"),
  ]);
  report.close();
  for (const r of loaded) if (r.status === "rejected") throw r.reason;
  rows.metrics = (loaded[1] as PromiseFulfilledResult<number>).value;
  fs.writeFileSync(seedMarkerFile(opts.stack), JSON.stringify({ seed: opts.seed, scale: opts.scale, asOf: new Date(asOf).toISOString(), completedAt: new Date().toISOString() }, null, 2) + "\n", { mode: 0o600 });
  return { rows, durationMs: Date.now() - started };
}
