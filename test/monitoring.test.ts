// Monitoring (issue 18 item 4): the local stack runs Debian's PostgreSQL exporter as nb_monitor; a
// scrape over HTTP finds the project's own metrics (audit sealer lag, partitions ahead, replica lag)
// with plausible values. Beside it, PgBouncer's exporter on the pooler's admin console as nb_monitor,
// a stats user that can run no admin command. Real servers, the real exporters.
import { expect } from "chai";
import * as fs from "fs";
import { SESSION_POOL_SIZE, connectionUrl, readonlyPoolDatabase, sessionPoolDatabase } from "../client/outputs";
import { POOLER_DEFAULTS } from "../infra/topology/pgbouncerIni";
import {
  MONITOR_ROLE,
  PGBOUNCER_EXPORTER_DRIVER_VERSION,
  PGBOUNCER_EXPORTER_IMAGE_DRIVER,
  PGBOUNCER_EXPORTER_IMPORT_CHECK,
  PROJECT_METRICS,
  pgbouncerExporterYaml,
} from "../infra/topology/monitoring";
import { installedPgbouncerExporter } from "../scripts/local/setup";
import { execFile } from "child_process";
import * as path from "path";
import { promisify } from "util";
import { DATABASE, LOGIN_ROLES, ROLES } from "../schema/roles";
import { exporterPid, installedExporters } from "../scripts/local/monitoring";
import { localContext } from "../scripts/local/context";
import { processAlive } from "../scripts/local/system";
import { down, status, up } from "../scripts/local/stack";
import * as net from "net";
import { HOST, LocalStackOutputs, caFile, requireStack, saveState } from "../scripts/local/state";
import { query, rejection, uniqueStack } from "./helpers";

/** Every sample of `metric` in a Prometheus text exposition: labels and value. */
function samples(text: string, metric: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== metric) continue;
    const labels = Object.fromEntries([...(m[3] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    out.push({ labels, value: Number(m[4]) });
  }
  return out;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status, url).to.equal(200);
  return res.text();
}

describe("monitoring: the local stack's exporters and the project's metrics", function () {
  this.timeout(600_000);
  const stack = uniqueStack("metrics");
  let out: LocalStackOutputs;
  let urls: Record<string, string>;

  before(async function () {
    if (installedExporters().length !== 2) throw new Error("the exporters are missing: sudo npx nbdb setup --for-tests");
    out = (await up({ stack, replicas: 1 })).outputs;
    const s = await status(stack);
    expect(s.problems).to.deep.equal([]);
    urls = Object.fromEntries(s.monitoring.map((e) => [e.name, e.url]));
  });

  /** nb_monitor on the pooler's admin console, over its TLS verified against the stack's CA. */
  const monitorConsole = () => {
    const { passwords, ports } = requireStack(stack);
    return connectionUrl(MONITOR_ROLE, passwords.nb_monitor, { host: HOST, port: ports.pooler }, "pgbouncer", caFile(stack));
  };

  it("names the exporters' URLs in status, on 127.0.0.1 and running", async function () {
    const s = await status(stack);
    expect(s.monitoring.map((e) => [e.name, e.running])).to.deep.equal([
      ["postgres-exporter", true],
      ["pgbouncer-exporter", true],
    ]);
    expect(new Set(s.monitoring.map((e) => e.url)).size, "a port each").to.equal(2);
    for (const e of s.monitoring) expect(e.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  });

  it("exports the project's metrics from PostgreSQL with plausible values", async function () {
    const text = await scrape(urls["postgres-exporter"]);
    expect(samples(text, "pg_up").map((s) => s.value)).to.deep.equal([1]);
    const [unsealed] = samples(text, PROJECT_METRICS.sealerUnsealed);
    const [oldest] = samples(text, PROJECT_METRICS.sealerOldestSeconds);
    expect(unsealed.value).to.be.at.least(0);
    expect(oldest.value).to.be.at.least(0).and.below(3600);
    const ahead = Object.fromEntries(samples(text, PROJECT_METRICS.partitionsAhead).map((s) => [s.labels.table_name, s.value]));
    // V014's premake: days of metrics ahead; at least one month ahead of the audit trail.
    expect(ahead.metrics).to.be.at.least(5);
    expect(ahead.golden_dag_audit).to.be.at.least(1);
    const lag = samples(text, PROJECT_METRICS.replicaLagBytes);
    expect(lag.map((s) => s.labels.replica)).to.deep.equal(["replica-0"]);
    expect(lag[0].value).to.be.at.least(0);
    expect(samples(text, PROJECT_METRICS.replicaLagSeconds)[0].value).to.be.at.least(0);
  });

  it("connects as nb_monitor, a pg_monitor member that can read no project table", async function () {
    const spec = ROLES.find((r) => r.name === "nb_monitor")!;
    expect(LOGIN_ROLES).to.include("nb_monitor");
    expect(spec.memberOf).to.deep.equal(["pg_monitor"]);
    const [who] = await query<{ n: number }>(out.connections.admin, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'nb_monitor'");
    expect(who.n, "the exporter's connection").to.be.greaterThan(0);
    const monitor = new URL(out.connections.admin);
    const { passwords } = requireStack(stack);
    monitor.username = "nb_monitor";
    monitor.password = encodeURIComponent(passwords.nb_monitor);
    expect(await rejection(query(monitor.toString(), "SELECT count(*) FROM neuralblitz.golden_dag_audit"))).to.match(/permission denied/);
    expect(await rejection(query(monitor.toString(), "SELECT count(*) FROM neuralblitz.users"))).to.match(/permission denied/);
    const [lag] = await query<{ unsealed: string }>(monitor.toString(), "SELECT unsealed FROM neuralblitz.golden_dag_seal_lag()");
    expect(Number(lag.unsealed)).to.be.at.least(0);
  });

  it("exports PgBouncer's pools and stats for the neuralblitz databases; the transaction count rises with transactions through the pooler", async function () {
    const before = await scrape(urls["pgbouncer-exporter"]);
    expect(samples(before, "pgbouncer_up").map((s) => s.value), "every SHOW the exporter runs succeeded").to.deep.equal([1]);
    const xacts = (text: string) => samples(text, "pgbouncer_stats_transactions_total").find((s) => s.labels.database === "neuralblitz")?.value ?? 0;
    const n = 5;
    for (let i = 0; i < n; i++) await query(out.connections.app, "SELECT 1");
    const after = await scrape(urls["pgbouncer-exporter"]);
    expect(xacts(after) - xacts(before)).to.be.at.least(n);
    for (const metric of ["pgbouncer_pools_client_waiting_connections", "pgbouncer_pools_server_active_connections", "pgbouncer_pools_client_active_connections"]) {
      const pools = samples(after, metric);
      expect(pools.find((s) => s.labels.database === "neuralblitz" && s.labels.user === "nb_app")?.value, `${metric} of nb_app's pool`).to.be.at.least(0);
    }
    // SHOW DATABASES: every entry of pgbouncer.ini with its pool size; the console's own database left out.
    const poolSizes = Object.fromEntries(samples(after, "pgbouncer_databases_database_pool_size").map((s) => [s.labels.database, s.value]));
    expect(poolSizes).to.deep.equal({ neuralblitz: POOLER_DEFAULTS.defaultPoolSize, [sessionPoolDatabase(DATABASE)]: SESSION_POOL_SIZE, [readonlyPoolDatabase(DATABASE)]: POOLER_DEFAULTS.defaultPoolSize });
    expect(samples(after, "pgbouncer_stats_queries_total").map((s) => s.labels.database)).to.include("neuralblitz").and.not.include("pgbouncer");
    expect(samples(after, "pgbouncer_config_max_client_conn")[0].value).to.equal(POOLER_DEFAULTS.maxClientConnections);
  });

  it("reads the pooler as nb_monitor, a stats user: SHOW works, PAUSE, RELOAD and SHUTDOWN are refused", async function () {
    const url = monitorConsole();
    expect(new URL(url).searchParams.get("sslmode")).to.equal("verify-full");
    const stats = await query<{ database: string }>(url, "SHOW STATS");
    expect(stats.map((r) => r.database)).to.include("neuralblitz");
    for (const cmd of ["PAUSE", "RELOAD", "SHUTDOWN", "KILL neuralblitz", "DISABLE neuralblitz"]) {
      expect(await rejection(query(url, cmd)), cmd).to.match(/admin access needed/);
    }
    expect((await status(stack)).pooler.running, "the pooler kept running").to.equal(true);
    // Listed in the auth file for the console, it still reaches no database through the pooler.
    const pooled = new URL(url);
    pooled.pathname = `/${DATABASE}`;
    expect(await rejection(query(pooled.toString(), "SELECT 1"))).to.match(/no pg_hba\.conf entry .*nb_monitor/);
    // The exporter's own connection: nb_monitor on the console, over TLS.
    const clients = await query<{ user: string; database: string; tls: string }>(url, "SHOW CLIENTS");
    expect(clients.filter((c) => c.user === MONITOR_ROLE && c.database === "pgbouncer").every((c) => /TLS/.test(c.tls))).to.equal(true);
  });

  it("keeps nb_monitor's password out of the PgBouncer exporter's config and command line", async function () {
    const ctx = localContext(stack, () => undefined);
    const pid = exporterPid(ctx, "pgbouncer-exporter")!;
    const { passwords } = requireStack(stack);
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const config = /--config=([^\0]+)/.exec(argv)![1];
    expect(fs.readFileSync(config, "utf8")).to.contain("$(NBDB_MONITOR_PASSWORD)").and.not.contain(passwords.nb_monitor);
    expect(argv).to.not.contain(passwords.nb_monitor);
  });

  it("runs PgBouncer's exporter on the shared config (the containers' renderer): the pooler on 127.0.0.1, verify-full against the stack's CA", async function () {
    const ctx = localContext(stack, () => undefined);
    const argv = fs.readFileSync(`/proc/${exporterPid(ctx, "pgbouncer-exporter")!}/cmdline`, "utf8");
    const config = fs.readFileSync(/--config=([^\0]+)/.exec(argv)![1], "utf8");
    const { ports } = requireStack(stack);
    const port = Number(new URL(urls["pgbouncer-exporter"]).port);
    expect(config).to.equal(pgbouncerExporterYaml({ listenHost: HOST, listenPort: port, pooler: { host: HOST, port: ports.pooler }, caFile: caFile(stack) }));
    expect(config).to.include(`@${HOST}:${ports.pooler}/pgbouncer?sslmode=verify-full&sslrootcert=${caFile(stack)}`);
  });

  it("up restarts a killed PgBouncer exporter on its kept port", async function () {
    const ctx = localContext(stack, () => undefined);
    const pid = exporterPid(ctx, "pgbouncer-exporter")!;
    const port = requireStack(stack).ports.exporters!.pgbouncer;
    process.kill(pid, "SIGKILL");
    while (processAlive(pid, "pgbouncer-exporter")) await new Promise((r) => setTimeout(r, 100));
    expect((await status(stack)).problems).to.include(`pgbouncer-exporter is not running (npx nbdb up --stack ${stack} starts it)`);
    const { changes } = await up({ stack });
    expect(changes).to.include("started pgbouncer-exporter");
    expect(requireStack(stack).ports.exporters!.pgbouncer).to.equal(port);
    expect(samples(await scrape(urls["pgbouncer-exporter"]), "pgbouncer_up").map((s) => s.value)).to.deep.equal([1]);
  });

  it("follows a new nb_monitor password: the pooler's auth file and the exporter both take it on the next up", async function () {
    const state = requireStack(stack);
    const old = monitorConsole();
    state.passwords.nb_monitor = `${state.passwords.nb_monitor.slice(0, -4)}abcd`;
    saveState(state);
    const { changes } = await up({ stack });
    expect(changes).to.include.members(["restarted postgres-exporter", "restarted pgbouncer-exporter"]);
    expect(samples(await scrape(urls["pgbouncer-exporter"]), "pgbouncer_up").map((s) => s.value)).to.deep.equal([1]);
    expect(await query(monitorConsole(), "SHOW POOLS")).to.not.be.empty;
    expect(await rejection(query(old, "SHOW POOLS")), "the old password").to.match(/authentication failed/);
  });

  it("stops the exporters with the stack", async function () {
    await down({ stack });
    const s = await status(stack);
    expect(s.monitoring.every((e) => !e.running)).to.equal(true);
    expect(s.problems).to.include("postgres-exporter is not running (npx nbdb up --stack " + stack + " starts it)");
    expect(s.problems).to.include("pgbouncer-exporter is not running (npx nbdb up --stack " + stack + " starts it)");
  });

  it("refuses up, naming the exporter's port, while another process holds it", async function () {
    const ports = requireStack(stack).ports.exporters!;
    for (const [name, port] of [["postgres-exporter", ports.postgres!], ["pgbouncer-exporter", ports.pgbouncer!]] as const) {
      const squatter = net.createServer().listen(port, "127.0.0.1");
      await new Promise((r) => squatter.once("listening", r));
      try {
        expect(await rejection(up({ stack }))).to.match(new RegExp(`port ${port}, kept for ${name} of stack '${stack}', is in use`));
        expect((await status(stack)).nodes[0].running, "nothing was started").to.equal(false);
      } finally {
        await new Promise((r) => squatter.close(r));
      }
    }
  });
});

describe("monitoring: the PgBouncer exporter's local environment runs what the images install", function () {
  this.timeout(60_000);

  it("has the psycopg2 release the Docker and AWS images pin (Debian's python3-psycopg2, on libpq 15)", async function () {
    const bin = installedPgbouncerExporter();
    if (!bin) throw new Error("the PgBouncer exporter is missing: sudo npx nbdb setup --for-tests");
    const python = path.join(path.dirname(bin), "python");
    const { stdout } = await promisify(execFile)(python, ["-c", `${PGBOUNCER_EXPORTER_IMPORT_CHECK}; print(psycopg2.__version__.split()[0], psycopg2.__libpq_version__ // 10000)`]);
    expect(stdout.trim()).to.equal(`${PGBOUNCER_EXPORTER_DRIVER_VERSION} 15`);
    expect(PGBOUNCER_EXPORTER_IMAGE_DRIVER).to.equal(`psycopg2-binary==${PGBOUNCER_EXPORTER_DRIVER_VERSION}`);
  });
});
