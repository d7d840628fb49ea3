// The shared replica bootstrap on a data directory that already holds a cluster (what a Docker
// replica container runs at every start): it takes the replica again when the primary has lost or
// dropped its slot (issue 15 item 7), and writes the current replication password into
// primary_conninfo, which pg_basebackup stored there (item 8). Real primary, real pg_basebackup.
// A primary that is another cluster (initdb'd anew on the same port after its data was lost) never
// makes a replica discard its data: the script refuses, and so do the local stack's `up` and rebuild
// paths (the one comparison of database system identifiers); failover then makes the replica's data
// the primary's again. A former primary's directory (a whole cluster of the primary's without
// standby.signal: what a Docker switchover or failover hands a replica) is rewound as nb_replicator
// and re-attached, never started as a second primary (issue 18 item 2).
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { REWIND_FUNCTIONS, replicaBootstrapScript, REPLICATION_USER } from "../infra/topology/replicaBootstrap";
import { replicationSlotProvider } from "../infra/dynamic/replicationSlot";
import { bin, localContext } from "../scripts/local/context";
import { createRoles, createSchema, ensureDatabase } from "../scripts/local/bootstrap";
import { controlData, dataDir, initPrimary, replicaName, runningPid, startNode, stopNode } from "../scripts/local/postgresNode";
import { up } from "../scripts/local/stack";
import { failover } from "../scripts/local/switchover";
import { HOST, LocalStackOutputs, caFile, loadState, stackDir } from "../scripts/local/state";
import { chownToServer, freePort, run, waitFor } from "../scripts/local/system";
import { query, rejection, uniqueStack, treeDigest } from "./helpers";

describe("replica bootstrap on an existing data directory", function () {
  const stack = uniqueStack("bootstrap");
  let out: LocalStackOutputs;
  let password: string;
  const ctx = () => localContext(stack, () => undefined);

  let originalId: string;
  /** The superuser's URL of replica 0 (the admin URL names the primary's port). */
  const replicaAdmin = () => out.connections.admin.replace(`:${out.primary.port}/`, `:${out.replicas[0].port}/`);
  const systemId = async (url: string) => (await query<{ id: string }>(url, "SELECT system_identifier::text AS id FROM pg_catalog.pg_control_system()"))[0].id;

  before(async function () {
    out = (await up({ stack, replicas: 1 })).outputs;
    password = loadState(stack)!.passwords.nb_replicator;
    originalId = await systemId(out.connections.admin);
  });

  async function bootstrap(index: number, dir: string, primaryPort = out.primary.port): Promise<string> {
    const script = replicaBootstrapScript({ primaryHost: HOST, primaryPort, replicationUser: REPLICATION_USER, index, caFile: caFile(stack), waitSeconds: 10 });
    const c = ctx();
    const r = await run("/bin/sh", ["-c", script], { as: c.user, env: { PGDATA: dir, PGPASSWORD: password, PATH: `${c.bins.pgBinDir}:${process.env.PATH}` } });
    return r.stdout + r.stderr;
  }

  function fakeCluster(name: string): string {
    const dir = path.join(stackDir(stack), name);
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.writeFileSync(path.join(dir, "PG_VERSION"), "15\n");
    fs.writeFileSync(path.join(dir, "postgresql.auto.conf"), `primary_conninfo = 'user=nb_replicator password=OLDsecret-1 host=${HOST} port=${out.primary.port} application_name=replica-3'\nprimary_slot_name = 'replica_3'\n`);
    // A replica's: a standby.signal (a whole cluster without one is a former primary, tested below).
    fs.writeFileSync(path.join(dir, "standby.signal"), "");
    for (const f of ["", "PG_VERSION", "postgresql.auto.conf", "standby.signal"]) chownToServer(path.join(dir, f), ctx().user);
    return dir;
  }

  it("up grants nb_replicator pg_rewind's functions in database postgres again on an existing stack; it stays no superuser", async function () {
    const postgresDb = new URL(out.connections.admin);
    postgresDb.pathname = "/postgres";
    const granted = async () =>
      Promise.all(REWIND_FUNCTIONS.map(async (f) => (await query<{ ok: boolean }>(postgresDb.toString(), "SELECT pg_catalog.has_function_privilege($1, $2, 'EXECUTE') AS ok", [REPLICATION_USER, f]))[0].ok));
    expect(await granted()).to.deep.equal([true, true, true, true]);
    await query(postgresDb.toString(), REWIND_FUNCTIONS.map((f) => `REVOKE EXECUTE ON FUNCTION ${f} FROM ${REPLICATION_USER};`).join("\n"));
    expect(await granted()).to.deep.equal([false, false, false, false]);
    await up({ stack });
    expect(await granted()).to.deep.equal([true, true, true, true]);
    const [role] = await query<{ rolsuper: boolean }>(out.connections.admin, `SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = '${REPLICATION_USER}'`);
    expect(role.rolsuper).to.equal(false);
  });

  it("keeps a replica whose slot the primary holds, with the current replication password", async function () {
    await query(out.connections.admin, "SELECT pg_create_physical_replication_slot('replica_3', true)");
    const dir = fakeCluster("replica-3");
    const log = await bootstrap(3, dir);
    expect(log).to.include("data directory already holds a cluster");
    const conf = fs.readFileSync(path.join(dir, "postgresql.auto.conf"), "utf8");
    expect(conf).to.include(`password=${password} `).and.not.include("OLDsecret-1");
    expect(fs.readFileSync(path.join(dir, "PG_VERSION"), "utf8")).to.equal("15\n");
  });

  it("takes a replica again when its slot is gone on the primary", async function () {
    const dir = fakeCluster("replica-4");
    const log = await bootstrap(4, dir);
    expect(log).to.include("slot replica_4 is lost or gone on the primary").and.include("base backup taken");
    expect(fs.existsSync(path.join(dir, "global", "pg_control"))).to.equal(true);
    const [slot] = await query<{ lsn: string | null }>(out.connections.admin, "SELECT restart_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'replica_4'");
    expect(slot.lsn).to.not.equal(null);
  });

  it("drops a removed replica's slot (the Docker stack's ReplicationSlot delete), and is done when it is already gone", async function () {
    const provider = replicationSlotProvider();
    for (const slot of ["replica_3", "replica_4"]) {
      await provider.delete!(slot, { slotName: slot, connection: out.connections.admin });
      await provider.delete!(slot, { slotName: slot, connection: out.connections.admin });
    }
    expect(await query(out.connections.admin, "SELECT slot_name FROM pg_replication_slots WHERE slot_name IN ('replica_3', 'replica_4')")).to.deep.equal([]);
  });

  it("takes a replica of the same cluster again when its slot is lost (the identifiers agree)", async function () {
    const dir = path.join(stackDir(stack), "replica-5");
    fs.mkdirSync(dir, { mode: 0o700 });
    chownToServer(dir, ctx().user);
    expect(await bootstrap(5, dir)).to.include("base backup taken");
    await query(out.connections.admin, "SELECT pg_drop_replication_slot('replica_5')");
    const log = await bootstrap(5, dir);
    expect(log).to.include("slot replica_5 is lost or gone on the primary").and.include("base backup taken");
    const [slot] = await query<{ lsn: string | null }>(out.connections.admin, "SELECT restart_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'replica_5'");
    expect(slot.lsn).to.not.equal(null);
  });

  it("starts a whole replica from its own data when the primary cannot be asked for its identifier", async function () {
    const dir = path.join(stackDir(stack), "replica-5");
    const before = treeDigest(path.join(dir, "global"));
    const log = await bootstrap(5, dir, await freePort());
    expect(log).to.include("primary not reachable; starting from the existing data directory").and.include("data directory already holds a cluster");
    expect(treeDigest(path.join(dir, "global"))).to.equal(before);
  });

  describe("on a former primary's data directory (a whole cluster of the primary's, no standby.signal: a Docker switchover or failover gives it to a replica)", function () {
    const dir = () => path.join(stackDir(stack), "replica-6");
    let port: number;
    /** The superuser's URL of database postgres on the server at `p`. */
    const postgresAt = (p: number) => {
      const u = new URL(out.connections.admin.replace(`:${out.primary.port}/`, `:${p}/`));
      u.pathname = "/postgres";
      return u.toString();
    };
    const pgCtl = (...args: string[]) => run(bin(ctx(), "pg_ctl"), args, { as: ctx().user, timeoutMs: 120_000 });
    /** The copy on its own port: no socket, no archiving into the stack's repository. */
    const startCopy = () => pgCtl("start", "--wait", `--pgdata=${dir()}`, `--log=${path.join(`${dir()}-log`, "server.log")}`, "-o", `-p ${port} -c unix_socket_directories= -c archive_mode=off -c cluster_name=nbdb-test-copy`);
    const rows = async (url: string) => (await query<{ x: number }>(url, "SELECT x FROM public.bootstrap_rows ORDER BY x")).map((r) => r.x);

    before(async function () {
      port = await freePort([out.primary.port, out.replicas[0].port]);
      await query(postgresAt(out.primary.port), "CREATE TABLE public.bootstrap_rows (x int); INSERT INTO public.bootstrap_rows VALUES (1)");
      // A replica of the stack's primary, taken by the script, then promoted: a primary of the same cluster.
      for (const d of [dir(), `${dir()}-log`]) {
        fs.mkdirSync(d, { mode: 0o700 });
        chownToServer(d, ctx().user);
      }
      expect(await bootstrap(6, dir())).to.include("base backup taken");
      await startCopy();
      await pgCtl("promote", "--wait", `--pgdata=${dir()}`);
      // As a primary it kept a replica's slot, which pg_rewind leaves in its pg_replslot.
      await query(postgresAt(port), "SELECT pg_catalog.pg_create_physical_replication_slot('replica_0', true)");
      // Both diverge: a row only the former primary has, and one only the primary has.
      await query(postgresAt(port), "INSERT INTO public.bootstrap_rows VALUES (2)");
      await query(postgresAt(out.primary.port), "INSERT INTO public.bootstrap_rows VALUES (3)");
      await pgCtl("stop", "--wait", "--mode=fast", `--pgdata=${dir()}`);
      expect(fs.existsSync(path.join(dir(), "standby.signal"))).to.equal(false);
    });

    after(async function () {
      await pgCtl("stop", "--wait", "--mode=immediate", `--pgdata=${dir()}`).catch(() => undefined);
      await query(out.connections.admin, "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = 'replica_6'");
    });

    it("refuses when the primary cannot be asked (exit 1): the directory is byte for byte as it was, no standby.signal", async function () {
      const before = treeDigest(dir());
      const message = await rejection(bootstrap(6, dir(), await freePort([port])));
      expect(message).to.include("holds a former primary (no standby.signal)").and.include("cannot be asked about it").and.include("does not start");
      expect(treeDigest(dir())).to.equal(before);
      expect(fs.existsSync(path.join(dir(), "standby.signal"))).to.equal(false);
    });

    it("refuses when the primary is itself in recovery (exit 1), changing nothing", async function () {
      const before = treeDigest(dir());
      const message = await rejection(bootstrap(6, dir(), out.replicas[0].port));
      expect(message).to.include("is itself in recovery").and.include("does not start");
      expect(treeDigest(dir())).to.equal(before);
    });

    it("rewinds it as nb_replicator (no superuser: the grants above) and re-attaches it: it streams from the primary, the row only it had gone", async function () {
      const log = await bootstrap(6, dir());
      expect(log).to.include("is re-attached (rewound) as a standby").and.not.include("base backup taken");
      expect(fs.existsSync(path.join(dir(), "standby.signal"))).to.equal(true);
      const auto = fs.readFileSync(path.join(dir(), "postgresql.auto.conf"), "utf8");
      expect(auto.match(/^primary_conninfo/gm)).to.have.length(1);
      expect(auto).to.include(`port=${out.primary.port} user=${REPLICATION_USER} `).and.include(`password=${password} application_name=replica-6'`);
      expect(auto).to.include("primary_slot_name = 'replica_6'");
      await startCopy();
      await waitFor("the re-attached replica to stream", 60_000, async () =>
        (await query(out.connections.admin, "SELECT 1 FROM pg_catalog.pg_stat_replication WHERE application_name = 'replica-6' AND state = 'streaming'")).length > 0 || undefined,
      );
      const [recovery] = await query<{ r: boolean }>(postgresAt(port), "SELECT pg_catalog.pg_is_in_recovery() AS r");
      expect(recovery.r).to.equal(true);
      // No slot of its life as a primary holds WAL on the standby.
      expect(fs.readdirSync(path.join(dir(), "pg_replslot"))).to.deep.equal([]);
      expect(await query(postgresAt(port), "SELECT slot_name FROM pg_catalog.pg_replication_slots")).to.deep.equal([]);
      await query(postgresAt(out.primary.port), "INSERT INTO public.bootstrap_rows VALUES (4)");
      await waitFor("the replica to replay row 4", 60_000, async () => ((await rows(postgresAt(port))).includes(4) ? true : undefined));
      expect(await rows(postgresAt(port))).to.deep.equal([1, 3, 4]);
      await pgCtl("stop", "--wait", "--mode=fast", `--pgdata=${dir()}`);
    });

    it("takes a new base backup of the primary when pg_rewind fails (here: the former primary's WAL is gone)", async function () {
      await startCopy();
      await pgCtl("promote", "--wait", `--pgdata=${dir()}`);
      await pgCtl("stop", "--wait", "--mode=fast", `--pgdata=${dir()}`);
      const wal = path.join(dir(), "pg_wal");
      for (const f of fs.readdirSync(wal)) if (fs.statSync(path.join(wal, f)).isFile()) fs.rmSync(path.join(wal, f));
      const log = await bootstrap(6, dir());
      expect(log).to.include("pg_rewind of the former primary").and.include("failed").and.include("taking a new base backup").and.include("base backup taken");
      expect(fs.existsSync(path.join(dir(), "standby.signal"))).to.equal(true);
      expect((await controlData(ctx(), dir())).systemIdentifier).to.equal(originalId);
    });

    it("re-attaches a cleanly stopped former primary after a switchover with no rewind required", async function () {
      // A (replica-6's directory) promoted, B a standby of it, A stopped cleanly (B has its last WAL), B promoted: A is B's former primary.
      const other = path.join(stackDir(stack), "replica-7");
      const otherPort = await freePort([out.primary.port, out.replicas[0].port, port]);
      fs.mkdirSync(other, { mode: 0o700 });
      chownToServer(other, ctx().user);
      const startOther = () => pgCtl("start", "--wait", `--pgdata=${other}`, `--log=${path.join(`${dir()}-log`, "other.log")}`, "-o", `-p ${otherPort} -c unix_socket_directories= -c archive_mode=off`);
      const streamsTo = (p: number, name: string) =>
        waitFor(`${name} to stream from the server on port ${p}`, 60_000, async () =>
          (await query(postgresAt(p), "SELECT 1 FROM pg_catalog.pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", [name])).length > 0 || undefined,
        );
      try {
        await startCopy();
        expect(await bootstrap(7, other, port)).to.include("base backup taken");
        await startOther();
        const receivedTimeline = async () => (await query<{ tli: number | null }>(postgresAt(otherPort), "SELECT received_tli AS tli FROM pg_catalog.pg_stat_wal_receiver WHERE status = 'streaming'"))[0]?.tli ?? undefined;
        const before = await waitFor("replica-7 to stream", 60_000, receivedTimeline);
        await pgCtl("promote", "--wait", `--pgdata=${dir()}`);
        // B follows A onto its new timeline before A stops.
        await waitFor("replica-7 to follow the promotion", 60_000, async () => ((await receivedTimeline()) ?? 0) > before || undefined);
        await pgCtl("stop", "--wait", "--mode=fast", `--pgdata=${dir()}`);
        await pgCtl("promote", "--wait", `--pgdata=${other}`);
        // What a switchover does after the promotion, so that pg_rewind reads B's new timeline from its control file.
        await query(postgresAt(otherPort), "CHECKPOINT");
        const log = await bootstrap(6, dir(), otherPort);
        expect(log).to.include("is re-attached (no rewind required) as a standby");
        expect(fs.existsSync(path.join(dir(), "standby.signal"))).to.equal(true);
        expect(fs.readFileSync(path.join(dir(), "postgresql.auto.conf"), "utf8")).to.include(`port=${otherPort} user=${REPLICATION_USER} `);
        await startCopy();
        await streamsTo(otherPort, "replica-6");
      } finally {
        await pgCtl("stop", "--wait", "--mode=immediate", `--pgdata=${other}`).catch(() => undefined);
      }
    });
  });

  describe("when the primary is a new, empty cluster on the same port", function () {
    let freshId: string;
    const original = () => path.join(stackDir(stack), "primary.original");

    before(async function () {
      // The primary's directory replaced by a bare initdb: no role, database or schema of the platform in it.
      const c = ctx();
      await stopNode(c, "primary");
      fs.renameSync(dataDir(c, "primary"), original());
      await initPrimary(c, loadState(stack)!);
      await startNode(c, "primary");
      freshId = (await controlData(c, dataDir(c, "primary"))).systemIdentifier;
      expect(freshId).to.match(/^\d+$/).and.not.equal(originalId);
    });

    it("up names the replaced primary (both identifiers) before anything uses it, and changes nothing", async function () {
      const pid = runningPid(ctx(), replicaName(0));
      const conf = fs.readFileSync(path.join(dataDir(ctx(), "primary"), "postgresql.conf"), "utf8");
      const message = await rejection(up({ stack }));
      expect(message).to.include("holds another cluster than replica-0").and.include(freshId).and.include(originalId);
      expect(message).to.include(`npx nbdb failover --stack ${stack}`).and.include("Nothing was changed");
      expect(message).to.not.include("does not exist");
      expect(fs.readFileSync(path.join(dataDir(ctx(), "primary"), "postgresql.conf"), "utf8")).to.equal(conf);
      expect(runningPid(ctx(), replicaName(0))).to.equal(pid);
      const postgresDb = new URL(out.connections.admin);
      postgresDb.pathname = "/postgres";
      expect(await query(postgresDb.toString(), "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'nb_replicator'")).to.deep.equal([]);
    });
  });

  describe("when the primary is a new cluster on the same port with the platform's roles, database and schema", function () {
    let freshId: string;

    before(async function () {
      // What the Docker primary's entrypoint does on a lost volume: initdb anew, the platform's roles, database and schema created again.
      const state = loadState(stack)!;
      await createRoles(state);
      await ensureDatabase(state, true);
      await createSchema(state);
      freshId = await systemId(out.connections.admin);
      expect(freshId).to.not.equal(originalId);
    });

    it("the bootstrap script refuses, naming both identifiers, and leaves the replica's files as they were", async function () {
      const dir = path.join(stackDir(stack), "replica-5");
      const before = treeDigest(dir);
      const message = await rejection(bootstrap(5, dir));
      expect(message).to.include("is a different cluster than the one this replica copies").and.include(freshId).and.include(originalId);
      expect(message).to.include("docs/switchover.md").and.include("delete this replica's data directory");
      expect(treeDigest(dir)).to.equal(before);
      expect(await query(out.connections.admin, "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'replica_5'")).to.deep.equal([]);
    });

    it("up refuses to rebuild the local replica from it; the replica goes on running on its own data", async function () {
      const pid = runningPid(ctx(), replicaName(0));
      const message = await rejection(up({ stack }));
      expect(message).to.include("holds another cluster than replica-0").and.include(freshId).and.include(originalId);
      expect(message).to.include(`npx nbdb failover --stack ${stack}`);
      expect(runningPid(ctx(), replicaName(0))).to.equal(pid);
      expect(await systemId(replicaAdmin())).to.equal(originalId);
    });

    it("failover makes the replica's data the primary's again; the new cluster is moved aside, never deleted", async function () {
      await stopNode(ctx(), "primary");
      const res = await failover({ stack });
      expect(res.formerPrimary).to.include("is not known to be a copy of the new primary's cluster: moved aside");
      expect(res.steps.join("\n")).to.include(`the primary's database system identifier is ${originalId}, this replica's ${freshId}`);
      expect(await systemId(out.connections.admin)).to.equal(originalId);
      const aside = fs.readdirSync(stackDir(stack)).filter((f) => f.startsWith("failed-primary-"));
      expect(aside).to.have.length(1);
      const { stdout } = await run(path.join(ctx().bins.pgBinDir, "pg_controldata"), [path.join(stackDir(stack), aside[0])], { as: ctx().user, env: { LC_ALL: "C" } });
      expect(stdout).to.match(new RegExp(`^Database system identifier:\\s+${freshId}$`, "m"));
      expect(await systemId(replicaAdmin())).to.equal(originalId);
    });
  });
});
