// docs/contracts.md against the code that owns each fact it states: every table marked
// `<!-- checked: <name> -->` is parsed and compared with the constants, so a number changed in the
// code (or in the page) without the other fails here. Pure: no servers, no Pulumi engine.
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { SESSION_POOL_SIZE, readonlyPoolDatabase, sessionPoolDatabase } from "../client/outputs";
import { stackOutputs } from "../infra/outputs";
import { Cluster } from "../infra/platform/types";
import { RESERVE_POOL_SIZE } from "../infra/topology/connectionBudget";
import { BACKUP_JOBS, SCHEDULED_JOBS, JOB_ROLE } from "../infra/topology/maintenanceSchedule";
import { POOLER_DEFAULTS, POOLER_FAILURE_SETTINGS } from "../infra/topology/pgbouncerIni";
import { DATABASE, ROLES, ROLE_TIMEOUT_DEFAULTS, RoleSpec, TimedRole } from "../schema/roles";
import { PARTITIONED_TABLES, PREMAKE_RANGE, RETENTION_DAYS_RANGE, partitionPolicies } from "../schema/tables";
import { SUPERUSER, newState, outputsOf } from "../scripts/local/state";
import { COMMANDS } from "../scripts/nbdb";

const ROOT = path.join(__dirname, "..");
const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), "utf8");
const CONTRACTS = read("docs/contracts.md");

/** The rows of the markdown table after `<!-- checked: name -->`, as cells with backticks removed. */
function table(name: string): string[][] {
  const at = CONTRACTS.indexOf(`<!-- checked: ${name} -->`);
  if (at < 0) throw new Error(`docs/contracts.md has no table marked <!-- checked: ${name} -->`);
  const lines = CONTRACTS.slice(at).split("\n").slice(1);
  const rows: string[][] = [];
  for (const line of lines) {
    if (!line.startsWith("|")) break;
    rows.push(
      line
        .slice(1, -1)
        .split("|")
        .map((c) => c.trim().replace(/`/g, "")),
    );
  }
  expect(rows.length, `table ${name}`).to.be.greaterThan(2);
  return rows.slice(2); // header and separator
}

/** A flag as the page writes it. */
const yesNo = (b: boolean): string => (b ? "yes" : "no");

function unwrap<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

describe("docs/contracts.md states what the code does", function () {
  describe("outputs", function () {
    const state = newState("docs-contract", { primary: 1001, pooler: 1003 });
    state.ports.replicas = [1002];
    const local = outputsOf(state);

    it("lists every key of the local outputs.json and of the Pulumi stack outputs, and only those", function () {
      const rows = table("outputs");
      const localKeys = rows.filter((r) => r[1] === "yes").map((r) => r[0]);
      expect(localKeys).to.have.members(Object.keys(local));
      // The Pulumi program's outputs are infra/index.ts's exports.
      const exported = [...read("infra/index.ts").matchAll(/^export const (\w+)/gm)].map((m) => m[1]);
      expect(rows.filter((r) => r[2].startsWith("yes")).map((r) => r[0])).to.have.members(exported);
      expect(rows.map((r) => r[0])).to.have.members([...new Set([...Object.keys(local), ...exported])]);
    });

    it("names the tls keys each kind of stack writes", function () {
      expect(Object.keys(local.tls!)).to.deep.equal(["caFile"]);
      expect(CONTRACTS).to.contain("the local stack writes `{ caFile }`");
      const declared = /readonly tls: pulumi\.Output<\{([^}]*)\}>/.exec(read("infra/outputs.ts"));
      expect(declared, "infra/outputs.ts declares tls").to.not.equal(null);
      const keys = [...declared![1].matchAll(/readonly (\w+)\??:/g)].map((m) => m[1]);
      expect(CONTRACTS).to.contain(`A Pulumi stack exports \`{ ${keys.join(", ")} }\``);
    });

    it("routes each connection as the table says, on the local stack and on Pulumi stacks", async function () {
      const rows = table("connections");
      // "pooler" or "pooler (<database>)" (backticks stripped): the pooler's port, that entry; otherwise the primary, the database.
      const where = (connectsTo: string, o: { primary: { port: number }; pooler: { port: number } }): number => (connectsTo.startsWith("pooler") ? o.pooler.port : o.primary.port);
      const entry = (connectsTo: string): string => /^pooler \((\w+)\)$/.exec(connectsTo)?.[1] ?? DATABASE;
      expect(rows.map((r) => r[0])).to.have.members(Object.keys(local.connections));
      for (const [key, role, connectsTo] of rows) {
        const url = new URL((local.connections as Record<string, string>)[key]);
        expect(url.username, key).to.equal(role === "postgres (superuser)" ? SUPERUSER : role);
        expect(Number(url.port), key).to.equal(where(connectsTo, local));
        expect(url.pathname, key).to.equal(`/${entry(connectsTo)}`);
        expect(url.searchParams.get("sslmode"), key).to.equal("verify-full");
      }
      expect(entry(rows.find((r) => r[0] === "readonly")![2])).to.equal(readonlyPoolDatabase(DATABASE));
      // Without a replica the URL stays the same: the pooler's entry points at the primary instead.
      const alone = outputsOf({ ...state, ports: { ...state.ports, replicas: [] } });
      const endpointOf = (u: string) => { const x = new URL(u); return `${x.username}@${x.host}${x.pathname}`; };
      expect(endpointOf(alone.connections.readonly)).to.equal(endpointOf(local.connections.readonly));

      const at = { primary: { host: "p", port: 2001 }, replicas: [{ host: "r", port: 2002 }], pooler: { host: "b", port: 2003, poolMode: "transaction" as const } };
      const cluster = {
        primary: pulumi.output(at.primary),
        replicas: pulumi.output(at.replicas),
        pooler: pulumi.output(at.pooler),
        serverCaFile: "/ca/server.crt",
        serverCa: pulumi.output("PEM"),
        poolerTls: { caCertificate: pulumi.output("PEM"), caFile: "/ca/pooler.crt" },
      } as unknown as Cluster;
      const pw = pulumi.output("pw");
      const deployed = await unwrap(stackOutputs("dev", cluster, { nb_app: pw, nb_readonly: pw, nb_auditor: pw, nb_migrator: pw, nb_pgbouncer: pw, nb_replicator: pw, nb_monitor: pw }, pw).connections);
      const pulumiRows = rows.filter((r) => r[0] !== "admin");
      expect(Object.keys(deployed)).to.have.members(pulumiRows.map((r) => r[0]));
      expect(CONTRACTS).to.match(/\| `admin` \|[^\n]*the local stack only; never exported by Pulumi stacks/);
      for (const [key, role, connectsTo] of pulumiRows) {
        const url = new URL((deployed as unknown as Record<string, string>)[key]);
        expect(url.username, key).to.equal(role);
        expect(Number(url.port), key).to.equal(where(connectsTo, at));
        expect(url.pathname, key).to.equal(`/${entry(connectsTo)}`);
      }
    });

    it("names the session-mode entry and its size", function () {
      expect(CONTRACTS).to.contain(`database \`${sessionPoolDatabase(DATABASE)}\``);
      expect(table("pooler").find((r) => r[2] === "SESSION_POOL_SIZE")![1]).to.equal(String(SESSION_POOL_SIZE));
    });
  });

  it("gives every role its login, connection limit, pooler-only flag and timeouts", function () {
    const rows = table("roles");
    expect(rows.map((r) => r[0])).to.deep.equal(ROLES.map((r) => r.name));
    for (const [name, login, limit, poolerOnly, timeouts] of rows) {
      const spec: RoleSpec = ROLES.find((r) => r.name === name)!;
      expect(login, name).to.equal(yesNo(spec.login));
      expect(limit, name).to.equal(spec.connectionLimit === undefined || spec.connectionLimit < 0 ? "none" : String(spec.connectionLimit));
      expect(poolerOnly, name).to.equal(yesNo(spec.poolerOnly === true));
      expect(timeouts, name).to.equal(yesNo(spec.timeouts === true));
    }
  });

  it("gives the role-level timeout defaults in milliseconds", function () {
    const rows = table("timeouts");
    expect(rows.map((r) => r[0])).to.have.members(Object.keys(ROLE_TIMEOUT_DEFAULTS));
    for (const [role, statementMs, lockMs, idleMs] of rows) {
      const t = ROLE_TIMEOUT_DEFAULTS[role as TimedRole];
      expect([statementMs, lockMs, idleMs].map(Number), role).to.deep.equal([t.statementMs, t.lockMs, t.idleInTransactionMs]);
    }
  });

  it("gives the pooler's defaults and failure settings", function () {
    const constants: Record<string, string | number> = {
      "POOLER_DEFAULTS.poolMode": POOLER_DEFAULTS.poolMode,
      "POOLER_DEFAULTS.maxClientConnections": POOLER_DEFAULTS.maxClientConnections,
      "POOLER_DEFAULTS.defaultPoolSize": POOLER_DEFAULTS.defaultPoolSize,
      RESERVE_POOL_SIZE,
      SESSION_POOL_SIZE,
      ...Object.fromEntries(Object.entries(POOLER_FAILURE_SETTINGS).map(([k, v]) => [`POOLER_FAILURE_SETTINGS.${k}`, v])),
    };
    const rows = table("pooler");
    expect(rows.map((r) => r[2])).to.have.members(Object.keys(constants));
    for (const [setting, value, owner] of rows) expect(value, setting).to.equal(String(constants[owner]));
  });

  it("gives the scheduled jobs, their times and their role", function () {
    const rows = table("jobs");
    expect(rows).to.deep.equal(SCHEDULED_JOBS.map((j) => [j.name, j.schedule, j.command, JOB_ROLE]));
  });

  it("suggests, in docs/backup.md, the same backup schedule for a local stack's crontab as BACKUP_JOBS", function () {
    const lines = [...read("docs/backup.md").matchAll(/^(\S+ \S+ \S+ \S+ \S+) +cd .* npx nbdb backup --stack local --type (\w+) /gm)].map((m) => [m[1], m[2]]);
    expect(lines).to.deep.equal(BACKUP_JOBS.map((j) => [j.schedule, j.type]));
  });

  describe("partitions", function () {
    it("gives each partitioned table its key, period, premake and retention as schema/tables.ts states them", function () {
      const rows = table("partitions");
      expect(rows.map((r) => r[0])).to.have.members(PARTITIONED_TABLES.map((t) => t.name));
      for (const [name, key, period, premake, retention, action] of rows) {
        const spec = PARTITIONED_TABLES.find((t) => t.name === name)!.partitioning;
        const policy = partitionPolicies().find((p) => p.table === name)!;
        expect([key, period], name).to.deep.equal([spec.key, spec.period]);
        expect({ premake, retention, action }, name).to.deep.equal({
          premake: String(policy.premake),
          retention: policy.retention ? `${policy.retention.days} days` : "none",
          action: policy.retention?.action ?? "",
        });
      }
    });

    it("names V014's periods as schema/tables.ts does (V014 creates the rows; the generated bundle sets premake and retention)", function () {
      const v014 = read("sql/migrations/V014__monitoring_alerts_and_partition_policies.sql");
      const seeded = new Map([...v014.matchAll(/\('(\w+)',\s*'(\w+)',\s*\d+,/g)].map((m) => [m[1], m[2]]));
      expect(Object.fromEntries(seeded)).to.deep.equal(Object.fromEntries(PARTITIONED_TABLES.map((t) => [t.name, t.partitioning.period])));
    });

    it("gives the partitions.<table>.* config keys' ranges, and which tables take a retention, as infra/config.ts reads them", function () {
      const rows = table("partition-config");
      const ranges: Record<string, { min: number; max: number }> = { premake: PREMAKE_RANGE, retentionDays: RETENTION_DAYS_RANGE };
      expect(rows.map((r) => r[0])).to.deep.equal(Object.keys(ranges).map((k) => `partitions.<table>.${k}`));
      for (const [key, range, tables] of rows) {
        const setting = key.split(".")[2];
        expect(range, key).to.equal(`${ranges[setting].min}-${ranges[setting].max}`);
        const taking = PARTITIONED_TABLES.filter((t) => setting === "premake" || t.partitioning.retention).map((t) => t.name);
        expect(tables.split(",").map((t) => t.trim()), key).to.have.members(taking);
      }
    });
  });

  it("is listed, with every other page of docs/, in the README's Documentation section", function () {
    const readme = read("README.md");
    const section = readme.slice(readme.indexOf("\n## Documentation\n"));
    expect(section.length, "README.md has a Documentation section").to.be.lessThan(readme.length);
    const listed = [...section.matchAll(/^- \[docs\/([\w.-]+\.md)\]\(docs\/\1\)/gm)].map((m) => m[1]);
    expect(listed).to.have.members(fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")));
  });

  it("lists exactly the commands that exit with 1 on a verdict", function () {
    // A command exits with 1 when its module's verdict() says so (scripts/nbdb.ts applies it once).
    const verdicts = COMMANDS.filter((c) => c.verdict !== undefined).map((c) => c.name);
    expect(verdicts).to.include.members(["status", "grants diff", "audit verify"]);
    expect(table("exit-1").map((r) => r[0])).to.have.members(verdicts);
    expect(CONTRACTS).to.match(/\| 2 \| an error: bad input/);
    expect(read("scripts/nbdb.ts")).to.contain("process.exitCode = 2");
  });
});

