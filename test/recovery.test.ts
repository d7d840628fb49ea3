// Recovery without manual repair (issue 16): every state a crash or a fault leaves, and `nbdb up`
// healing it in one run; status that does not lie. Real servers on free ports.
import { expect } from "chai";
import { ChildProcess, execFile, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { down, status, up } from "../scripts/local/stack";
import { LocalStackOutputs, readOutputs, stackDir } from "../scripts/local/state";
import { processesUsing, sleep, waitFor } from "../scripts/local/system";
import { query, rejection, uniqueStack } from "./helpers";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");

function nbdb(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: process.env }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function onPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

// Small WAL limits, so that a replica loses its slot after some 100 MB of WAL instead of 8 GB.
const SMALL_WAL = { max_slot_wal_keep_size: "48MB", wal_keep_size: "0", max_wal_size: "64MB", min_wal_size: "32MB" };

async function walBytes(admin: string): Promise<number> {
  const [r] = await query<{ b: string }>(admin, "SELECT sum(size)::bigint AS b FROM pg_ls_waldir()");
  return Number(r.b);
}

describe("recovery: a replica that stops reading", function () {
  const stack = uniqueStack("frozen");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 1, bundles: false, settings: SMALL_WAL })).outputs;
  });

  it("never holds the primary hostage: the slot is given up, pg_wal stays bounded, and up rebuilds the replica", async function () {
    this.timeout(600_000);
    const admin = out.connections.admin;
    const replicaAdmin = onPort(admin, out.replicas[0].port);
    const [{ pid: receiver }] = await query<{ pid: number }>(replicaAdmin, "SELECT pid FROM pg_stat_wal_receiver");
    process.kill(receiver, "SIGSTOP");
    try {
      await query(admin, "CREATE TABLE public.ballast (id int, pad text)");
      const started = Date.now();
      // About 400 MB of WAL, eight times the slot's limit; each round checkpoints, as a busy primary would.
      for (let i = 0; i < 16; i++) {
        await query(admin, "INSERT INTO public.ballast SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g");
        await query(admin, "TRUNCATE public.ballast");
        const c = new Client({ connectionString: admin });
        await c.connect();
        await c.query("SET statement_timeout = '120s'");
        await c.query("CHECKPOINT");
        await c.end();
      }
      console.log(`      wrote WAL and checkpointed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const [slot] = await query<{ wal_status: string; active: boolean }>(admin, "SELECT wal_status, active FROM pg_replication_slots WHERE slot_name = 'replica_0'");
      console.log(`      slot: ${JSON.stringify(slot)}, pg_wal ${(await walBytes(admin)) / 1048576} MB`);
      expect(slot.wal_status).to.equal("lost");
      // The limit plus max_wal_size and a margin; without the limit it grows with every round.
      expect(await walBytes(admin)).to.be.below(200 * 1024 * 1024);
      const s = await status(stack);
      expect(s.nodes[1].streaming).to.equal(false);
      expect(s.problems.join("\n")).to.match(/replica-0 is not streaming/);
      const cli = await nbdb(["status", "--stack", stack, "--json"]);
      expect(cli.code).to.equal(1);
    } finally {
      process.kill(receiver, "SIGCONT");
    }
    const res = await up({ stack, bundles: false });
    expect(res.changes).to.include("re-bootstrapped replica-0 (slot lost)");
    expect((await status(stack)).problems).to.deep.equal([]);
    expect((await nbdb(["status", "--stack", stack])).code).to.equal(0);
  });
});
