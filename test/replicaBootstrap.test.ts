// The shared replica bootstrap on a data directory that already holds a cluster (what a Docker
// replica container runs at every start): it takes the replica again when the primary has lost or
// dropped its slot (issue 15 item 7), and writes the current replication password into
// primary_conninfo, which pg_basebackup stored there (item 8). Real primary, real pg_basebackup.
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { replicaBootstrapScript, REPLICATION_USER } from "../infra/topology/replicaBootstrap";
import { replicationSlotProvider } from "../infra/dynamic/replicationSlot";
import { localContext } from "../scripts/local/context";
import { up } from "../scripts/local/stack";
import { HOST, LocalStackOutputs, caFile, loadState, stackDir } from "../scripts/local/state";
import { chownToServer, run } from "../scripts/local/system";
import { query, uniqueStack } from "./helpers";

describe("replica bootstrap on an existing data directory", function () {
  const stack = uniqueStack("bootstrap");
  let out: LocalStackOutputs;
  let password: string;
  const ctx = () => localContext(stack, () => undefined);

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    password = loadState(stack)!.passwords.nb_replicator;
  });

  async function bootstrap(index: number, dir: string): Promise<string> {
    const script = replicaBootstrapScript({ primaryHost: HOST, primaryPort: out.primary.port, replicationUser: REPLICATION_USER, index, caFile: caFile(stack), waitSeconds: 10 });
    const c = ctx();
    const r = await run("/bin/sh", ["-c", script], { as: c.user, env: { PGDATA: dir, PGPASSWORD: password, PATH: `${c.bins.pgBinDir}:${process.env.PATH}` } });
    return r.stdout + r.stderr;
  }

  function fakeCluster(name: string): string {
    const dir = path.join(stackDir(stack), name);
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.writeFileSync(path.join(dir, "PG_VERSION"), "15\n");
    fs.writeFileSync(path.join(dir, "postgresql.auto.conf"), `primary_conninfo = 'user=nb_replicator password=OLDsecret-1 host=${HOST} port=${out.primary.port} application_name=replica-3'\nprimary_slot_name = 'replica_3'\n`);
    for (const f of ["", "PG_VERSION", "postgresql.auto.conf"]) chownToServer(path.join(dir, f), ctx().user);
    return dir;
  }

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
});
