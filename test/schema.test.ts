// The NeuralBlitz schema, applied through the bundle engine by `nbdb up`, against real PostgreSQL.
import { expect } from "chai";
import { Client } from "pg";
import { MATERIALIZED_VIEWS, MUTABLE_TABLES, PARTITIONED_TABLES, TABLES, TableSpec, VIEWS, partitionPolicies } from "../schema/tables";
import { PARTITION_MAINTENANCE_BUNDLE, partitionMaintenanceBundle } from "../infra/database/partitionMaintenance";
import { up } from "../scripts/local/stack";
import { query, rejection, uniqueStack } from "./helpers";

const HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

describe("schema", function () {
  let admin: string;
  const ids: Record<string, string> = {};

  async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
    return query<T>(admin, text, params);
  }

  async function newUser(username: string): Promise<string> {
    const [u] = await sql<{ id: string }>(
      `INSERT INTO neuralblitz.users (username, email_encrypted, email_hmac, password_hash, status)
       VALUES ($1, neuralblitz_crypto.pgp_sym_encrypt($1 || '@example.com', 'schema-test-key'), neuralblitz_crypto.digest($1, 'sha256'), $2, 'active') RETURNING id`,
      [username, HASH],
    );
    return u.id;
  }

  before(async function () {
    const { outputs } = await up({ stack: uniqueStack("schema"), replicas: 0 });
    admin = outputs.connections.admin;
    ids.alice = await newUser("alice");
    ids.bob = await newUser("bob");
  });

  it("has every modelled table, view and materialized view, owned by nb_owner (the audit trail by nb_audit)", async function () {
    const rows = await sql<{ name: string; kind: string; owner: string }>(
      `SELECT c.relname AS name, c.relkind::text AS kind, pg_get_userbyid(c.relowner) AS owner
         FROM pg_class c WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition`,
    );
    const byName = new Map(rows.map((r) => [r.name, r]));
    for (const t of TABLES as readonly TableSpec[]) expect(byName.get(t.name)?.kind, t.name).to.equal(t.partitioning ? "p" : "r");
    for (const v of VIEWS) expect(byName.get(v)?.kind, v).to.equal("v");
    for (const m of MATERIALIZED_VIEWS) expect(byName.get(m)?.kind, m).to.equal("m");
    const trail = ["golden_dag_audit", "golden_dag_seals", "golden_dag_head", "golden_dag_archives"];
    expect(rows.filter((r) => r.owner !== (trail.includes(r.name) ? "nb_audit" : "nb_owner"))).to.deep.equal([]);
  });

  it("carries user_id uuid not null on every user-data table", async function () {
    const rows = await sql<{ table: string }>(
      `SELECT c.relname AS table FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'neuralblitz'::regnamespace AND a.attname = 'user_id' AND a.attnotnull
          AND a.atttypid = 'uuid'::regtype AND NOT c.relispartition AND c.relkind IN ('r', 'p')`,
    );
    const withUserId = rows.map((r) => r.table);
    for (const t of TABLES.filter((t) => t.userData)) expect(withUserId, t.name).to.include(t.name);
  });

  it("indexes every foreign key column (leading index columns)", async function () {
    const unindexed = await sql(
      `SELECT con.conrelid::regclass::text AS table, con.conname
         FROM pg_constraint con
        WHERE con.contype = 'f' AND con.connamespace = 'neuralblitz'::regnamespace
          AND NOT EXISTS (
            SELECT 1 FROM pg_index i
             WHERE i.indrelid = con.conrelid AND i.indpred IS NULL
               AND (i.indkey::int2[])[0:cardinality(con.conkey) - 1] @> con.conkey
               AND (i.indkey::int2[])[0:cardinality(con.conkey) - 1] <@ con.conkey)
          AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = con.conrelid)`,
    );
    expect(unindexed).to.deep.equal([]);
  });

  it("enforces CHECK constraints for formats, ranges and enums", async function () {
    expect(await rejection(newUser("X"))).to.match(/users_username_format/);
    expect(
      await rejection(sql(`INSERT INTO neuralblitz.users (username, email_encrypted, email_hmac, password_hash) VALUES ('carol', neuralblitz_crypto.pgp_sym_encrypt('c', 'k'), neuralblitz_crypto.digest('c', 'sha256'), 'hunter2')`)),
    ).to.match(/users_password_is_hash/);
    expect(
      await rejection(sql(`INSERT INTO neuralblitz.quantum_neurons (user_id, label, amplitude) VALUES ($1, 'n', 1.5)`, [ids.alice])),
    ).to.match(/quantum_neurons_amplitude/);
    expect(await rejection(sql(`UPDATE neuralblitz.users SET status = 'deleted' WHERE id = $1`, [ids.bob]))).to.match(/users_soft_delete/);
    expect(
      await rejection(sql(`INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity, state) VALUES ('r', 'm', '>', 1, 'critical', 'firing')`)),
    ).to.match(/monitoring_alerts_fired/);
  });

  it("accepts exactly the metric names of its format: a-z or _, then at most 127 of a-z 0-9 _ . :", async function () {
    const accepted = async (name: string): Promise<boolean> => {
      const c = new Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query("BEGIN");
        await c.query("INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), $1, 1, 'schema-test')", [name]);
        return true;
      } catch (e) {
        if (/metrics_name_format/.test((e as Error).message)) return false;
        throw e;
      } finally {
        await c.query("ROLLBACK").catch(() => undefined);
        await c.end();
      }
    };
    for (const name of ["a", "_", "cpu.utilization", "api:errors_5xx", "a".repeat(128)]) expect(await accepted(name), name).to.equal(true);
    for (const name of ["", "a".repeat(129), "Cpu", "9cpu", ".cpu", "cpu-usage", "cpu load", "cpu\n", "é"]) expect(await accepted(name), name).to.equal(false);
  });

  it("cascades and sets null as the bundle headers declare", async function () {
    const temp = await newUser("cascade-victim");
    const [net] = await sql<{ id: string }>(`INSERT INTO neuralblitz.reality_networks (user_id, name) VALUES ($1, 'n1') RETURNING id`, [temp]);
    await sql(`INSERT INTO neuralblitz.reality_nodes (network_id, user_id, coordinates) VALUES ($1, $2, '{0,0,0}')`, [net.id, temp]);
    const [neuron] = await sql<{ id: string }>(`INSERT INTO neuralblitz.quantum_neurons (user_id, network_id, label) VALUES ($1, $2, 'q') RETURNING id`, [temp, net.id]);
    await sql(`INSERT INTO neuralblitz.api_keys (user_id, name, key_prefix, key_hash) VALUES ($1, 'k', 'nbk_cascade1', neuralblitz_crypto.digest('k', 'sha256'))`, [temp]);

    await sql(`DELETE FROM neuralblitz.reality_networks WHERE id = $1`, [net.id]);
    expect(await sql(`SELECT 1 FROM neuralblitz.reality_nodes WHERE network_id = $1`, [net.id])).to.have.length(0);
    const [kept] = await sql<{ network_id: string | null; user_id: string }>(`SELECT network_id, user_id FROM neuralblitz.quantum_neurons WHERE id = $1`, [neuron.id]);
    expect(kept).to.deep.equal({ network_id: null, user_id: temp });

    await sql(`DELETE FROM neuralblitz.users WHERE id = $1`, [temp]);
    expect(await sql(`SELECT 1 FROM neuralblitz.api_keys WHERE user_id = $1`, [temp])).to.have.length(0);
    expect(await sql(`SELECT 1 FROM neuralblitz.quantum_neurons WHERE user_id = $1`, [temp])).to.have.length(0);
    expect(await sql(`SELECT 1 FROM neuralblitz.quantum_neuron_history WHERE user_id = $1`, [temp])).to.have.length(0);
  });

  it("refuses a child filed under another user than its parent", async function () {
    const [net] = await sql<{ id: string }>(`INSERT INTO neuralblitz.reality_networks (user_id, name) VALUES ($1, 'alice-net') RETURNING id`, [ids.alice]);
    ids.aliceNet = net.id;
    expect(
      await rejection(sql(`INSERT INTO neuralblitz.reality_nodes (network_id, user_id, coordinates) VALUES ($1, $2, '{1}')`, [net.id, ids.bob])),
    ).to.match(/reality_nodes_network_fk/);
  });

  it("keeps updated_at current on exactly the mutable tables", async function () {
    const rows = await sql<{ table: string }>(
      `SELECT c.relname AS table FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE t.tgname LIKE '%\\_touch\\_updated\\_at' AND c.relnamespace = 'neuralblitz'::regnamespace ORDER BY 1`,
    );
    expect(rows.map((r) => r.table)).to.have.members([...MUTABLE_TABLES]);
    const [before] = await sql<{ updated_at: Date }>(`SELECT updated_at FROM neuralblitz.users WHERE id = $1`, [ids.alice]);
    await sql(`UPDATE neuralblitz.users SET last_login_at = now() WHERE id = $1`, [ids.alice]);
    const [after] = await sql<{ updated_at: Date }>(`SELECT updated_at FROM neuralblitz.users WHERE id = $1`, [ids.alice]);
    expect(after.updated_at.getTime()).to.be.greaterThan(before.updated_at.getTime());
  });

  describe("neuron state changes", function () {
    let neuron: string;

    before(async function () {
      [{ id: neuron }] = await sql<{ id: string }>(`INSERT INTO neuralblitz.quantum_neurons (user_id, label, state) VALUES ($1, 'counter', '{"n": 0}') RETURNING id`, [ids.alice]);
    });

    it("makes the second of two concurrent changes of the same version fail with a conflict", async function () {
      const a = new Client({ connectionString: admin });
      const b = new Client({ connectionString: admin });
      await a.connect();
      await b.connect();
      try {
        await a.query("BEGIN");
        await a.query(`SELECT neuralblitz.change_neuron_state($1, 1, '{"n": 1}', 0.5, 0, 1)`, [neuron]);
        const loser = b.query(`SELECT neuralblitz.change_neuron_state($1, 1, '{"n": 100}', 0.5, 0, 1)`, [neuron]).then(
          () => "won",
          (e: Error & { code?: string }) => `${e.code}: ${e.message}`,
        );
        await new Promise((r) => setTimeout(r, 200));
        await a.query("COMMIT");
        expect(await loser).to.match(/^40001: neuron .* was changed concurrently: expected version 1, found 2/);
      } finally {
        await a.end();
        await b.end();
      }
      const [row] = await sql<{ state: unknown; version: string }>(`SELECT state, version FROM neuralblitz.quantum_neurons WHERE id = $1`, [neuron]);
      expect(row).to.deep.equal({ state: { n: 1 }, version: "2" });
    });

    it("loses no update when two sessions increment with retries", async function () {
      const perWorker = 15;
      async function worker(): Promise<void> {
        const c = new Client({ connectionString: admin });
        await c.connect();
        try {
          for (let done = 0; done < perWorker; ) {
            const { rows } = await c.query(`SELECT version, (state->>'n')::int AS n FROM neuralblitz.quantum_neurons WHERE id = $1`, [neuron]);
            try {
              await c.query(`SELECT neuralblitz.change_neuron_state($1, $2, jsonb_build_object('n', $3::int), 0.5, 0, 1)`, [neuron, rows[0].version, rows[0].n + 1]);
              done++;
            } catch (e) {
              if ((e as { code?: string }).code !== "40001") throw e;
            }
          }
        } finally {
          await c.end();
        }
      }
      await Promise.all([worker(), worker()]);
      const [row] = await sql<{ n: number; version: string }>(`SELECT (state->>'n')::int AS n, version FROM neuralblitz.quantum_neurons WHERE id = $1`, [neuron]);
      expect(row).to.deep.equal({ n: 1 + 2 * perWorker, version: String(2 + 2 * perWorker) });
      const [hist] = await sql<{ updates: string }>(
        `SELECT count(*) FILTER (WHERE operation = 'UPDATE') AS updates FROM neuralblitz.quantum_neuron_history WHERE neuron_id = $1`,
        [neuron],
      );
      expect(Number(hist.updates)).to.equal(1 + 2 * perWorker);
    });
  });

  describe("partitioning", function () {
    async function partitionOf(table: string, keyColumn: string, id: string): Promise<string> {
      const [r] = await sql<{ p: string }>(`SELECT tableoid::regclass::text AS p FROM neuralblitz.${table} WHERE id = $1 AND ${keyColumn} IS NOT NULL`, [id]);
      return r.p;
    }

    it("holds schema/tables.ts's partition policies, set by the generated bundle the Pulumi stacks apply too (not V014's seed)", async function () {
      const rows = await sql<{ table_name: string; period: string; premake: number; days: number | null; retention_action: string | null }>(
        `SELECT table_name, period, premake, extract(day FROM retention)::int AS days, retention_action FROM neuralblitz.partition_policies`,
      );
      expect(rows.map((r) => ({ table: r.table_name, period: r.period, premake: r.premake, retention: r.days === null ? null : { days: r.days, action: r.retention_action } }))).to.have.deep.members(
        partitionPolicies(),
      );
      const [ledger] = await sql<{ checksum: string }>(`SELECT checksum FROM neuralblitz.bundle_ledger WHERE name = $1`, [PARTITION_MAINTENANCE_BUNDLE]);
      expect(ledger?.checksum).to.equal(partitionMaintenanceBundle().checksum);
    });

    it("creates partitions ahead for every partitioned table, with a default for strays", async function () {
      const rows = await sql<{ parent: string; n: string; has_default: boolean }>(
        `SELECT i.inhparent::regclass::text AS parent, count(*) AS n,
                bool_or(pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT') AS has_default
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent::regclass::text LIKE 'neuralblitz.%' GROUP BY 1`,
      );
      for (const t of PARTITIONED_TABLES) {
        const r = rows.find((x) => x.parent === `neuralblitz.${t.name}`);
        expect(r?.has_default, t.name).to.equal(true);
        expect(Number(r?.n), t.name).to.be.greaterThan(3);
      }
    });

    it("routes rows to the right partition across day, ISO week, month and year boundaries", async function () {
      await sql(`SELECT * FROM neuralblitz.run_partition_maintenance('2026-12-30')`);
      const m = await sql<{ id: string }>(
        `INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES
           ('2026-12-31 23:59:59.999+00', 'edge', 1, 't'), ('2027-01-01 00:00:00+00', 'edge', 2, 't') RETURNING id`,
      );
      expect(await partitionOf("metrics", "ts", m[0].id)).to.equal("neuralblitz.metrics_p20261231");
      expect(await partitionOf("metrics", "ts", m[1].id)).to.equal("neuralblitz.metrics_p20270101");

      const h = await sql<{ id: string }>(
        `INSERT INTO neuralblitz.quantum_neuron_history (neuron_id, user_id, operation, changed_at) VALUES
           (gen_random_uuid(), $1, 'UPDATE', '2027-01-03 23:59:59+00'), (gen_random_uuid(), $1, 'UPDATE', '2027-01-04 00:00:00+00') RETURNING id`,
        [ids.alice],
      );
      // 2027-01-03 is the Sunday of ISO week 53 of 2026; ISO week 1 of 2027 starts on Monday 4 January.
      expect(await partitionOf("quantum_neuron_history", "changed_at", h[0].id)).to.equal("neuralblitz.quantum_neuron_history_p2026w53");
      expect(await partitionOf("quantum_neuron_history", "changed_at", h[1].id)).to.equal("neuralblitz.quantum_neuron_history_p2027w01");

      const [rec] = await sql<{ id: string }>(
        `INSERT INTO neuralblitz.consciousness_records (user_id, subject_kind, subject_id, level, stage) VALUES ($1, 'neuron', gen_random_uuid(), 1, 'aware') RETURNING id`,
        [ids.alice],
      );
      const s = await sql<{ id: string }>(
        `INSERT INTO neuralblitz.consciousness_snapshots (record_id, user_id, snapshot, captured_at) VALUES
           ($1, $2, '{}', '2026-12-31 23:59:59+00'), ($1, $2, '{}', '2027-01-01 00:00:00+00') RETURNING id`,
        [rec.id, ids.alice],
      );
      expect(await partitionOf("consciousness_snapshots", "captured_at", s[0].id)).to.equal("neuralblitz.consciousness_snapshots_p202612");
      expect(await partitionOf("consciousness_snapshots", "captured_at", s[1].id)).to.equal("neuralblitz.consciousness_snapshots_p202701");
    });

    it("scans at most two partitions for one day's metrics", async function () {
      const [plan] = await sql<{ "QUERY PLAN": unknown }>(
        `EXPLAIN (FORMAT JSON) SELECT name, avg(value) FROM neuralblitz.metrics
          WHERE ts >= '2026-12-31 06:00+00' AND ts < '2027-01-01 06:00+00' GROUP BY name`,
      );
      const scanned = new Set<string>();
      (function walk(node: Record<string, unknown>): void {
        if (typeof node["Relation Name"] === "string") scanned.add(node["Relation Name"] as string);
        for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
      })((plan["QUERY PLAN"] as { Plan: Record<string, unknown> }[])[0].Plan);
      expect([...scanned].sort()).to.deep.equal(["metrics_p20261231", "metrics_p20270101"]);
    });

    it("moves rows out of the default partition when their partition is created, idempotently", async function () {
      const [stray] = await sql<{ id: string }>(`INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES ('2031-05-17 12:00+00', 'stray', 7, 't') RETURNING id`);
      expect(await partitionOf("metrics", "ts", stray.id)).to.equal("neuralblitz.metrics_default");
      const first = await sql<{ action: string; partition_name: string; rows_moved: string }>(
        `SELECT action, partition_name, rows_moved FROM neuralblitz.run_partition_maintenance('2026-12-30') WHERE table_name = 'metrics'`,
      );
      expect(first).to.deep.include({ action: "created", partition_name: "metrics_p20310517", rows_moved: "1" });
      expect(await partitionOf("metrics", "ts", stray.id)).to.equal("neuralblitz.metrics_p20310517");
      expect(await sql(`SELECT 1 FROM neuralblitz.metrics_default`)).to.have.length(0);
      expect(await sql(`SELECT * FROM neuralblitz.run_partition_maintenance('2026-12-30')`)).to.deep.equal([]);
    });

    it("applies retention: metrics partitions dropped, history partitions detached, the audit trail never dropped", async function () {
      await sql(`INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES ('2026-06-01 00:00+00', 'old', 1, 't')`);
      await sql(`INSERT INTO neuralblitz.quantum_neuron_history (neuron_id, user_id, operation, changed_at) VALUES (gen_random_uuid(), $1, 'UPDATE', '2024-06-03 00:00+00')`, [ids.alice]);
      const actions = await sql<{ table_name: string; action: string; partition_name: string }>(
        `SELECT table_name, action, partition_name FROM neuralblitz.run_partition_maintenance('2026-12-30') WHERE action <> 'created'`,
      );
      expect(actions).to.deep.include({ table_name: "metrics", action: "dropped", partition_name: "metrics_p20260601" });
      expect(actions).to.deep.include({ table_name: "quantum_neuron_history", action: "detached", partition_name: "quantum_neuron_history_p2024w23_archived" });
      const [detached] = await sql<{ attached: boolean }>(`SELECT relispartition AS attached FROM pg_class WHERE oid = 'neuralblitz.quantum_neuron_history_p2024w23_archived'::regclass`);
      expect(detached.attached).to.equal(false);
      expect(await sql(`SELECT to_regclass('neuralblitz.metrics_p20260601') AS r`)).to.deep.equal([{ r: null }]);
      expect(
        await rejection(sql(`UPDATE neuralblitz.partition_policies SET retention = '1 year', retention_action = 'drop' WHERE table_name = 'golden_dag_audit'`)),
      ).to.match(/partition_policies_audit_never_dropped/);
    });

    it("never retires today's partitions, whatever date it is given", async function () {
      const today = new Date().toISOString().slice(0, 10).replace(/-/g, "");
      await sql(`SELECT * FROM neuralblitz.run_partition_maintenance(now() + interval '5 years')`);
      expect(await sql(`SELECT to_regclass('neuralblitz.metrics_p${today}') IS NOT NULL AS kept`)).to.deep.equal([{ kept: true }]);
    });

    it("keeps strays of the append-only audit trail in its default partition instead of rewriting them", async function () {
      // Only the trail's own role writes it (here a superuser acting as it).
      await sql(
        `BEGIN; SET LOCAL ROLE nb_audit;
         INSERT INTO neuralblitz.golden_dag_audit (recorded_at, table_name, operation, row_pk, db_role)
         VALUES ('2035-06-15+00', 't', 'INSERT', '{}', session_user); COMMIT`,
      );
      const actions = await sql<{ action: string; partition_name: string }>(
        `SELECT action, partition_name FROM neuralblitz.run_partition_maintenance() WHERE table_name = 'golden_dag_audit'`,
      );
      expect(actions).to.deep.include({ action: "kept in default", partition_name: "golden_dag_audit_p203506" });
      expect(await sql(`SELECT count(*)::int AS n FROM neuralblitz.golden_dag_audit_default`)).to.deep.equal([{ n: 1 }]);
    });

    it("lets rows arrive while it moves strays, and still creates their partition", async function () {
      await sql(`INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES ('2033-03-03 03:00+00', 'race', 1, 't')`);
      const mover = new Client({ connectionString: admin });
      await mover.connect();
      try {
        await mover.query("BEGIN");
        await mover.query("SELECT * FROM neuralblitz.run_partition_maintenance('2026-12-30')");
        // The default is locked until the move commits: a new stray of the same day waits for it.
        const late = sql(`INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES ('2033-03-03 04:00+00', 'race', 2, 't')`);
        await new Promise((r) => setTimeout(r, 200));
        await mover.query("COMMIT");
        await late;
      } finally {
        await mover.end();
      }
      const rows = await sql<{ p: string }>(`SELECT tableoid::regclass::text AS p FROM neuralblitz.metrics WHERE name = 'race' ORDER BY value`);
      expect(rows.map((r) => r.p)).to.deep.equal(["neuralblitz.metrics_p20330303", "neuralblitz.metrics_p20330303"]);
    });
  });

  it("refreshes the hourly roll-up concurrently", async function () {
    await sql(
      `INSERT INTO neuralblitz.metrics (ts, name, value, source)
       SELECT '2026-12-31 10:00+00'::timestamptz + i * interval '1 minute', 'cpu', i, 'host-a' FROM generate_series(0, 119) AS i`,
    );
    await sql(`SELECT neuralblitz.refresh_rollups()`);
    const rows = await sql<{ hour: Date; samples: string; max_value: number }>(
      `SELECT hour, samples, max_value FROM neuralblitz.metrics_hourly WHERE name = 'cpu' AND source = 'host-a' ORDER BY hour`,
    );
    expect(rows.map((r) => [r.hour.toISOString(), Number(r.samples), r.max_value])).to.deep.equal([
      ["2026-12-31T10:00:00.000Z", 60, 59],
      ["2026-12-31T11:00:00.000Z", 60, 119],
    ]);
    const [idx] = await sql<{ unique: boolean }>(`SELECT indisunique AS unique FROM pg_index WHERE indexrelid = 'neuralblitz.metrics_hourly_key'::regclass`);
    expect(idx.unique).to.equal(true);
  });

  it("answers the views on a small fixture", async function () {
    await sql(
      `INSERT INTO neuralblitz.reality_nodes (network_id, user_id, coordinates, status, health) VALUES
         ($1, $2, '{0}', 'online', 0.9), ($1, $2, '{1}', 'degraded', 0.4), ($1, $2, '{2}', 'online', 0.2)`,
      [ids.aliceNet, ids.alice],
    );
    const [net] = await sql<Record<string, unknown>>(
      `SELECT nodes, nodes_online, nodes_unhealthy, avg_health::float8 AS avg_health FROM neuralblitz.reality_status_view WHERE network_id = $1`,
      [ids.aliceNet],
    );
    expect(net).to.deep.equal({ nodes: "3", nodes_online: "2", nodes_unhealthy: "2", avg_health: 0.5 });

    const subject = "00000000-0000-4000-8000-000000000001";
    await sql(
      `INSERT INTO neuralblitz.consciousness_records (user_id, subject_kind, subject_id, level, stage, recorded_at) VALUES
         ($1, 'network', $2, 10, 'emergent', '2026-01-01'), ($1, 'network', $2, 30, 'aware', '2026-02-01'), ($1, 'network', $2, 20, 'reflective', '2026-03-01')`,
      [ids.alice, subject],
    );
    const [cm] = await sql<Record<string, unknown>>(
      `SELECT records, min_level, max_level, avg_level, current_stage, current_level FROM neuralblitz.consciousness_metrics_view WHERE subject_id = $1`,
      [subject],
    );
    expect(cm).to.deep.equal({ records: "3", min_level: "10.000", max_level: "30.000", avg_level: "20.000", current_stage: "reflective", current_level: "20.000" });

    await sql(`INSERT INTO neuralblitz.api_keys (user_id, name, key_prefix, key_hash) VALUES ($1, 'live', 'nbk_alice001', neuralblitz_crypto.digest('a1', 'sha256'))`, [ids.alice]);
    await sql(`INSERT INTO neuralblitz.api_keys (user_id, name, key_prefix, key_hash, revoked_at) VALUES ($1, 'old', 'nbk_alice002', neuralblitz_crypto.digest('a2', 'sha256'), now())`, [ids.alice]);
    const [ua] = await sql<Record<string, unknown>>(`SELECT username, active_api_keys, networks FROM neuralblitz.user_activity_view WHERE user_id = $1`, [ids.alice]);
    expect(ua).to.deep.equal({ username: "alice", active_api_keys: "1", networks: "1" });
  });
});
