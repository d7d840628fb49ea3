// The `local` platform's topology under the real Pulumi engine: LocalTopology's provider runs the
// local stack's own up/down/status, so replicas scale by the tail, the primary is never restarted
// for it, refresh sees a stopped node, and a review stack's destroy leaves nothing behind.
import { expect } from "chai";
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import { LocalCluster, localStackName } from "../infra/platform/local";
import { status } from "../scripts/local/stack";
import { loadState, outputsOf, stackDir } from "../scripts/local/state";
import { processAlive } from "../scripts/local/system";
import { EngineWorkspace, engineStack, requireEngine } from "./engineHarness";
import { query } from "./helpers";

const PROJECT = "nbdb-engine-local";

function program(): Promise<Record<string, unknown>> {
  const config = new pulumi.Config();
  const cluster = new LocalCluster("nbdb", { stack: pulumi.getStack(), replicas: config.requireNumber("replicas"), home: process.env.NBDB_HOME, protectData: false });
  return Promise.resolve({ primary: cluster.primary, replicas: cluster.replicas, pooler: cluster.pooler });
}

function adminUrl(stack: string): string {
  return outputsOf(loadState(stack)!).connections.admin;
}

async function primaryStart(stack: string): Promise<string> {
  return (await query<{ t: string }>(adminUrl(stack), "SELECT pg_postmaster_start_time()::text AS t"))[0].t;
}

async function streamingReplicas(stack: string): Promise<number> {
  return (await status(stack)).nodes.filter((n) => n.role === "replica" && n.running && n.streaming).length;
}

describe("the local platform under the real Pulumi engine", function () {
  let binDir: string;
  let main: EngineWorkspace;
  const mainStack = "enginelocal";
  const local = localStackName(mainStack);

  before(async function () {
    binDir = requireEngine(this);
    main = await engineStack(binDir, { project: PROJECT, stack: mainStack, program, config: { [`${PROJECT}:replicas`]: "2" } });
  });
  after(async () => {
    await main?.stack.destroy().catch(() => undefined);
    await main?.remove();
  });

  it("up starts the primary, 2 streaming replicas and the pooler as this machine's processes, then settles", async () => {
    const res = await main.stack.up();
    expect(res.summary.resourceChanges).to.deep.include({ create: 3 });
    expect(await streamingReplicas(local)).to.equal(2);
    expect((await status(local)).pooler.running).to.equal(true);
    expect((res.outputs.replicas.value as unknown[]).length).to.equal(2);
    await main.stack.preview({ expectNoChanges: true });
    await main.stack.refresh({ expectNoChanges: true });
  });

  it("replicas 2 → 3 → 1 changes only the tail: the primary keeps running and its data stays", async () => {
    await query(adminUrl(local), "CREATE TABLE IF NOT EXISTS public.engine_marker (v int); INSERT INTO public.engine_marker VALUES (7)");
    const started = await primaryStart(local);
    const ports = loadState(local)!.ports.replicas.slice();
    await main.stack.setConfig(`${PROJECT}:replicas`, { value: "3" });
    const grown = await main.stack.up();
    expect(grown.summary.resourceChanges).to.deep.include({ update: 1 });
    expect(await streamingReplicas(local)).to.equal(3);
    expect(loadState(local)!.ports.replicas.slice(0, 2)).to.deep.equal(ports);
    await main.stack.setConfig(`${PROJECT}:replicas`, { value: "1" });
    await main.stack.up();
    expect((await status(local)).nodes.map((n) => n.node)).to.deep.equal(["primary", "replica-0"]);
    expect(loadState(local)!.ports.replicas).to.deep.equal([ports[0]]);
    expect(await primaryStart(local)).to.equal(started);
    expect(await query(adminUrl(local), "SELECT v FROM public.engine_marker")).to.deep.equal([{ v: 7 }]);
  });

  it("a node stopped by hand shows in refresh, and up starts it again", async () => {
    // The pooler alone (the servers keep their data), killed as a crash would: its pid file stays.
    const s = await status(local);
    process.kill(s.pooler.pid!, "SIGKILL");
    await new Promise((r) => setTimeout(r, 1000));
    expect(await main.stack.refresh({ expectNoChanges: true }).then(() => "settled", () => "drift")).to.equal("drift");
    await main.stack.up();
    expect((await status(local)).pooler.running).to.equal(true);
    await main.stack.preview({ expectNoChanges: true });
  });

  it("a review stack beside it: up, then destroy and stack rm leave no process and no directory; the other stack is untouched", async () => {
    const review = await engineStack(binDir, { project: PROJECT, stack: "review-engine", program, config: { [`${PROJECT}:replicas`]: "0" } });
    const reviewLocal = localStackName("review-engine");
    try {
      await review.stack.up();
      const pids = (await status(reviewLocal)).nodes.map((n) => n.pid!);
      expect(pids.every((p) => p > 0)).to.equal(true);
      await review.stack.destroy();
      await review.stack.workspace.removeStack("review-engine");
      expect(fs.existsSync(stackDir(reviewLocal))).to.equal(false);
      for (const pid of pids) expect(processAlive(pid, "postgres"), `pid ${pid} still runs`).to.equal(false);
      expect(await streamingReplicas(local)).to.equal(1);
    } finally {
      await review.remove();
    }
  });
});
