// Monitoring (issue 18 item 4): the local stack runs Debian's PostgreSQL exporter as nb_monitor; a
// scrape over HTTP finds the project's own metrics (audit sealer lag, partitions ahead, replica lag)
// with plausible values. Real servers, the real exporter.
import { expect } from "chai";
import { PROJECT_METRICS } from "../infra/topology/monitoring";
import { LOGIN_ROLES, ROLES } from "../schema/roles";
import { hasExporters } from "../scripts/local/monitoring";
import { down, status, up } from "../scripts/local/stack";
import * as net from "net";
import { LocalStackOutputs, requireStack } from "../scripts/local/state";
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
    if (!hasExporters()) throw new Error("Debian's exporters are missing: sudo npx nbdb setup --for-tests");
    out = (await up({ stack, replicas: 1 })).outputs;
    const s = await status(stack);
    expect(s.problems).to.deep.equal([]);
    urls = Object.fromEntries(s.monitoring.map((e) => [e.name, e.url]));
  });

  it("names the exporter's URL in status, on 127.0.0.1 and running", async function () {
    const s = await status(stack);
    expect(s.monitoring.map((e) => [e.name, e.running])).to.deep.equal([["postgres-exporter", true]]);
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

  it("stops the exporters with the stack", async function () {
    await down({ stack });
    const s = await status(stack);
    expect(s.monitoring.every((e) => !e.running)).to.equal(true);
    expect(s.problems).to.include("postgres-exporter is not running (npx nbdb up --stack " + stack + " starts it)");
  });

  it("refuses up, naming the exporter's port, while another process holds it", async function () {
    const port = requireStack(stack).ports.exporters!.postgres;
    const squatter = net.createServer().listen(port, "127.0.0.1");
    await new Promise((r) => squatter.once("listening", r));
    try {
      expect(await rejection(up({ stack }))).to.match(new RegExp(`port ${port}, kept for postgres-exporter of stack '${stack}', is in use`));
      expect((await status(stack)).nodes[0].running, "nothing was started").to.equal(false);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });
});
