// The local stack for real: a primary, streaming replicas and PgBouncer on free ports.
import { expect } from "chai";
import { execFile } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { parseReplicaCount, replicaLimit } from "../scripts/local/context";
import { down, status, up } from "../scripts/local/stack";
import { LocalStackOutputs as StackOutputs, loadState, stackDir } from "../scripts/local/state";
import { waitFor } from "../scripts/local/system";
import { query, rejection, uniqueStack } from "./helpers";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");

function nbdb(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function startTime(url: string): Promise<string> {
  const [row] = await query<{ t: string }>(url, "SELECT pg_postmaster_start_time()::text AS t");
  return row.t;
}

async function streamingReplicas(admin: string): Promise<string[]> {
  const rows = await query<{ application_name: string }>(admin, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1");
  return rows.map((r) => r.application_name);
}

function replicaUrl(out: StackOutputs, i: number): string {
  const u = new URL(out.connections.admin);
  u.port = String(out.replicas[i].port);
  return u.toString();
}

async function pids(stack: string): Promise<Record<string, number | null>> {
  const s = await status(stack);
  return Object.fromEntries([...s.nodes.map((n) => [n.node, n.pid]), ["pooler", s.pooler.pid]]);
}

describe("local stack", function () {
  const stack = uniqueStack("stack");
  let out: StackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 2 })).outputs;
    await query(out.connections.admin, "CREATE TABLE public.probe (id int PRIMARY KEY, note text); GRANT SELECT, INSERT ON public.probe TO nb_app");
  });

  it("runs a primary with two streaming replicas, each on its own slot", async function () {
    expect(await streamingReplicas(out.connections.admin)).to.deep.equal(["replica-0", "replica-1"]);
    const slots = await query<{ slot_name: string; active: boolean }>(out.connections.admin, "SELECT slot_name, active FROM pg_replication_slots ORDER BY 1");
    expect(slots).to.deep.equal([
      { slot_name: "replica_0", active: true },
      { slot_name: "replica_1", active: true },
    ]);
    const [settings] = await query<{ wal_level: string; password_encryption: string }>(
      out.connections.admin,
      "SELECT current_setting('wal_level') AS wal_level, current_setting('password_encryption') AS password_encryption",
    );
    expect(settings).to.deep.equal({ wal_level: "replica", password_encryption: "scram-sha-256" });
    const [hot] = await query<{ hot_standby: string; recovery: boolean }>(replicaUrl(out, 0), "SELECT current_setting('hot_standby') AS hot_standby, pg_is_in_recovery() AS recovery");
    expect(hot).to.deep.equal({ hot_standby: "on", recovery: true });
  });

  it("writes outputs.json in the shape docs/contracts.md fixes, readable by its owner only", function () {
    const file = path.join(stackDir(stack), "outputs.json");
    const written = JSON.parse(fs.readFileSync(file, "utf8"));
    expect(written).to.deep.equal(out);
    expect(Object.keys(written)).to.deep.equal(["stack", "database", "primary", "replicas", "pooler", "connections", "tls"]);
    expect(written.database).to.equal("neuralblitz");
    expect(written.pooler.poolMode).to.equal("transaction");
    expect(Object.keys(written.connections)).to.deep.equal(["app", "readonly", "auditor", "migrator", "admin"]);
    expect(new URL(written.connections.app).port).to.equal(String(out.pooler.port));
    expect(new URL(written.connections.readonly).port).to.equal(String(out.pooler.port));
    expect(new URL(written.connections.migrator).port).to.equal(String(out.primary.port));
    for (const f of ["outputs.json", "state.json"]) expect(fs.statSync(path.join(stackDir(stack), f)).mode & 0o777).to.equal(0o600);
  });

  it("keeps data directories private to the unprivileged server user", function () {
    for (const node of ["primary", "replica-0", "replica-1"]) {
      const st = fs.statSync(path.join(stackDir(stack), node));
      expect(st.mode & 0o777, node).to.equal(0o700);
      if (process.getuid?.() === 0) expect(st.uid, node).to.not.equal(0);
    }
  });

  it("pools the app's connections through PgBouncer in transaction mode and replicates its writes to every replica", async function () {
    const [who] = await query<{ u: string }>(out.connections.app, "SELECT current_user AS u");
    expect(who.u).to.equal("nb_app");
    await query(out.connections.app, "INSERT INTO public.probe VALUES (1, 'through the pooler')");
    for (let i = 0; i < 2; i++) {
      await waitFor(`the row on replica-${i}`, 10_000, async () =>
        (await query(replicaUrl(out, i), "SELECT 1 FROM public.probe WHERE id = 1")).length === 1 ? true : undefined,
      );
    }
    const pools = (await status(stack)).pooler.pools;
    expect(pools.map((p) => p.poolMode)).to.include("transaction");
  });

  it("has replicas that refuse writes", async function () {
    const msg = await rejection(query(replicaUrl(out, 1), "INSERT INTO public.probe VALUES (2, 'no')"));
    expect(msg).to.match(/read-only transaction/);
  });

  it("changes nothing on a second up: same ports, same pids", async function () {
    const before = await pids(stack);
    const again = await up({ stack });
    expect(again.changes).to.deep.equal([]);
    expect(again.outputs).to.deep.equal(out);
    expect(await pids(stack)).to.deep.equal(before);
  });

  it("reports the nodes and the pooler in status, and as JSON from the command line", async function () {
    const s = await status(stack);
    expect(s.nodes.map((n) => [n.node, n.role, n.running, n.streaming])).to.deep.equal([
      ["primary", "primary", true, null],
      ["replica-0", "replica", true, true],
      ["replica-1", "replica", true, true],
    ]);
    for (const n of s.nodes.slice(1)) {
      expect(n.lagBytes).to.be.a("number");
      expect(n.lagSeconds).to.be.a("number");
    }
    const cli = await nbdb(["status", "--stack", stack, "--json"]);
    expect(cli.code).to.equal(0);
    expect(JSON.parse(cli.stdout).nodes).to.have.length(3);
  });

  it("scales 2 → 3 → 1 touching only the tail, never the primary or the replicas that stay", async function () {
    const primaryStart = await startTime(out.connections.admin);
    const replica0Pid = (await pids(stack))["replica-0"];

    const grown = await up({ stack, replicas: 3 });
    expect(grown.changes.filter((c) => c.startsWith("created replica"))).to.have.length(1);
    expect(await streamingReplicas(out.connections.admin)).to.deep.equal(["replica-0", "replica-1", "replica-2"]);
    expect((await pids(stack))["replica-0"]).to.equal(replica0Pid);

    const shrunk = await up({ stack, replicas: 1 });
    expect(shrunk.changes).to.include.members(["removed replica-2", "removed replica-1"]);
    expect(await streamingReplicas(out.connections.admin)).to.deep.equal(["replica-0"]);
    const slots = await query<{ slot_name: string }>(out.connections.admin, "SELECT slot_name FROM pg_replication_slots");
    expect(slots.map((s) => s.slot_name)).to.deep.equal(["replica_0"]);
    expect(fs.existsSync(path.join(stackDir(stack), "replica-1"))).to.equal(false);
    expect(fs.existsSync(path.join(stackDir(stack), "replica-2"))).to.equal(false);
    expect(shrunk.outputs.replicas).to.have.length(1);
    expect(await startTime(out.connections.admin)).to.equal(primaryStart);
    expect((await pids(stack))["replica-0"]).to.equal(replica0Pid);

    out = (await up({ stack, replicas: 2 })).outputs;
  });

  it("restarts a replica that died, from its own data", async function () {
    const victim = (await pids(stack))["replica-1"]!;
    process.kill(victim, "SIGKILL");
    await waitFor("replica-1 to be reported down", 10_000, async () => {
      const s = await status(stack);
      return s.nodes.find((n) => n.node === "replica-1")!.running ? undefined : true;
    });
    const res = await up({ stack });
    expect(res.changes).to.deep.equal(["restarted replica-1"]);
    expect(await streamingReplicas(out.connections.admin)).to.deep.equal(["replica-0", "replica-1"]);
  });

  it("re-bootstraps a replica whose slot is gone", async function () {
    const ctxDown = path.join(stackDir(stack), "replica-1");
    const pid = Number(fs.readFileSync(path.join(ctxDown, "postmaster.pid"), "utf8").split("\n")[0]);
    process.kill(pid, "SIGKILL");
    await waitFor("the slot to be released", 10_000, async () =>
      (await query(out.connections.admin, "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'replica_1' AND NOT active")).length ? true : undefined,
    );
    await query(out.connections.admin, "SELECT pg_drop_replication_slot('replica_1')");
    const res = await up({ stack });
    expect(res.changes).to.deep.equal(["re-bootstrapped replica-1 (slot missing)"]);
    expect(await streamingReplicas(out.connections.admin)).to.deep.equal(["replica-0", "replica-1"]);
  });

  it("brings the same data back after down and up", async function () {
    await down({ stack });
    const s = await status(stack);
    expect(s.nodes.every((n) => !n.running)).to.equal(true);
    expect(s.pooler.running).to.equal(false);
    const res = await up({ stack });
    expect(res.changes).to.include("started the primary");
    expect(res.outputs).to.deep.equal(out);
    const rows = await query<{ note: string }>(out.connections.app, "SELECT note FROM public.probe WHERE id = 1");
    expect(rows).to.deep.equal([{ note: "through the pooler" }]);
    expect(await streamingReplicas(out.connections.admin)).to.deep.equal(["replica-0", "replica-1"]);
  });

  describe("the pooler's auth lookup", function () {
    it("is executable by nb_pgbouncer alone and never returns superusers, replication roles or expired roles", async function () {
      const admin = out.connections.admin;
      const fn = await query<{ prosecdef: boolean; proconfig: string[]; acl: string }>(
        admin,
        "SELECT prosecdef, proconfig, proacl::text AS acl FROM pg_proc WHERE oid = 'pgbouncer.get_auth(text)'::regprocedure",
      );
      expect(fn[0].prosecdef).to.equal(true);
      expect(fn[0].proconfig).to.deep.equal(["search_path=pg_catalog, pg_temp"]);
      const executors = await query<{ r: string }>(
        admin,
        "SELECT rolname AS r FROM pg_roles WHERE NOT rolsuper AND has_function_privilege(oid, 'pgbouncer.get_auth(text)', 'EXECUTE') ORDER BY 1",
      );
      expect(executors.map((e) => e.r)).to.deep.equal(["nb_pgbouncer"]);
      // nb_app reaches the server through the pooler only (pg_hba.conf).
      expect(await rejection(query(out.connections.app, "SELECT * FROM pgbouncer.get_auth('nb_app')"))).to.match(
        /permission denied/,
      );
      await query(admin, "CREATE ROLE nb_expired LOGIN PASSWORD 'x-expired-x' VALID UNTIL '2001-01-01'");
      const rows = await query<{ u: string; n: number }>(
        admin,
        `SELECT u, (SELECT count(*) FROM pgbouncer.get_auth(u))::int AS n
           FROM unnest(ARRAY['nb_app','postgres','nb_replicator','nb_owner','nb_expired']) AS u`,
      );
      expect(Object.fromEntries(rows.map((r) => [r.u, r.n]))).to.deep.equal({ nb_app: 1, postgres: 0, nb_replicator: 0, nb_owner: 0, nb_expired: 0 });
    });

    it("refuses a superuser and a wrong password at the pooler", async function () {
      const superAtPooler = out.connections.admin.replace(`:${out.primary.port}/`, `:${out.pooler.port}/`);
      expect(await rejection(query(superAtPooler, "SELECT 1"))).to.match(/no such user/);
      const wrong = out.connections.app.replace(/:[^:@/]+@/, ":not-the-password@");
      expect(await rejection(query(wrong, "SELECT 1"))).to.match(/password authentication failed|authentication/);
    });

    it("keeps no password but nb_pgbouncer's in the pooler's files", function () {
      const dir = path.join(stackDir(stack), "pgbouncer");
      const all = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f), "utf8")).join("\n");
      const passwords = loadState(stack)!.passwords;
      for (const [role, pw] of Object.entries(passwords)) {
        if (role === "nb_pgbouncer") expect(all).to.include(pw);
        else expect(all, role).to.not.include(pw);
      }
    });
  });

  describe("bad input changes nothing and says what to do", function () {
    it("rejects replica counts that are negative, not numbers, or more than the machine holds", async function () {
      expect(() => parseReplicaCount("-1")).to.throw(/whole number from 0 to/);
      expect(() => parseReplicaCount("abc")).to.throw(/whole number from 0 to/);
      expect(() => parseReplicaCount(String(replicaLimit() + 1))).to.throw(new RegExp(`at most ${replicaLimit()}`));
      const before = await pids(stack);
      const cli = await nbdb(["up", "--stack", stack, "--replicas", "-1"]);
      expect(cli.code).to.not.equal(0);
      expect(cli.stderr).to.match(/--replicas must be a whole number/);
      expect(await pids(stack)).to.deep.equal(before);
    });

    it("names the unknown stack for down and status", async function () {
      expect(await rejection(down({ stack: "no-such-stack" }))).to.match(/no stack 'no-such-stack'.*known stacks: .*nbdb up --stack no-such-stack/s);
      expect(await rejection(status("no-such-stack"))).to.match(/no stack 'no-such-stack'/);
      const cli = await nbdb(["status", "--stack", "no-such-stack"]);
      expect(cli.code).to.equal(2);
      expect(cli.stderr).to.match(/no stack 'no-such-stack'/);
    });

    it("names the command that installs the binaries when they are missing, before creating anything", async function () {
      const fresh = uniqueStack("nobins");
      const cli = await nbdb(["up", "--stack", fresh], { NBDB_PG_BINDIR: "/nonexistent", NBDB_PGBOUNCER: "/nonexistent/pgbouncer" });
      expect(cli.code).to.equal(2);
      expect(cli.stderr).to.match(/missing PostgreSQL 15\+ server binaries .* and PgBouncer 1\.24\.1/s);
      expect(cli.stderr).to.include("sudo npx nbdb setup");
      expect(fs.existsSync(stackDir(fresh))).to.equal(false);
    });

    it("refuses --purge without --yes", async function () {
      expect(await rejection(down({ stack, purge: true }))).to.match(/add --yes/);
      expect((await status(stack)).nodes[0].running).to.equal(true);
    });

    it("names a port taken by another process and starts nothing", async function () {
      await down({ stack });
      const squatter = net.createServer();
      await new Promise<void>((r) => squatter.listen(out.pooler.port, "127.0.0.1", () => r()));
      try {
        const msg = await rejection(up({ stack }));
        expect(msg).to.match(new RegExp(`port ${out.pooler.port}, kept for pgbouncer .* is in use by another process`));
        const s = await status(stack);
        expect(s.nodes.some((n) => n.running)).to.equal(false);
      } finally {
        await new Promise((r) => squatter.close(r));
      }
      expect((await up({ stack })).outputs).to.deep.equal(out);
    });
  });
});

describe("local stack recovery", function () {
  it("finishes a stack whose first up was interrupted after initdb started, with the replica count it was asked for", async function () {
    const stack = uniqueStack("crash");
    // A killed first run leaves state.json and a half-written data directory behind.
    const first = nbdbChild(stack, 1);
    await waitFor("initdb to begin", 30_000, async () => (fs.existsSync(path.join(stackDir(stack), "primary", "base")) ? true : undefined));
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));
    const res = await up({ stack });
    expect(res.changes).to.include("created roles, database and schema");
    expect(res.outputs.replicas).to.have.length(1);
    const [row] = await query<{ n: string }>(res.outputs.connections.migrator, "SELECT current_database() AS n");
    expect(row.n).to.equal("neuralblitz");
    await down({ stack, purge: true, yes: true });
    expect(fs.existsSync(stackDir(stack))).to.equal(false);
  });
});

function nbdbChild(stack: string, replicas: number) {
  return execFile(process.execPath, [BIN, "up", "--stack", stack, "--replicas", String(replicas)], { env: process.env });
}
