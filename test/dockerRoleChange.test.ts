// `nbdb switchover` / `failover` on a Docker stack (scripts/ops/dockerRoleChange.ts): no Docker engine
// runs here, so the docker and pulumi CLIs are a model of one Docker host (containers, their volumes,
// each volume's cluster) behind the module's runner. The model acts as the program and the images
// do: `pulumi up` replaces a container whose volume the config changed; the primary container refuses
// a standby's volume (its entrypoint guard); a replica container rewinds a primary's volume into a
// standby (the shared bootstrap). The tests check the order of the steps that make a switchover lose
// nothing, the refusals that change nothing, and that `--resume` heals each interrupted state.
import { expect } from "chai";
import { DockerStackOutput, Runner, dockerFailover, dockerResume, dockerSwitchover } from "../scripts/ops/dockerRoleChange";
import { rejection } from "./helpers";

interface Volume {
  /** pg_controldata's "Database cluster state" while stopped; "in production" / "in archive recovery" while running. */
  state: string;
  standby: boolean;
  /** WAL written (a primary) or replayed (a standby). */
  lsn: number;
  slots: Set<string>;
  /** A checkpoint since the promotion: the control file names the new timeline. */
  checkpointed?: boolean;
  /** pg_ctl promote was asked for and the server has not finished it: it does when it stops. */
  promoting?: boolean;
}
interface Container {
  role: string;
  volume: string;
  status: "running" | "exited" | "restarting";
}

const hex = (n: number) => `0/${n.toString(16).toUpperCase()}`;
const unhex = (lsn: string) => parseInt(lsn.split("/")[1], 16);

class DockerHost {
  readonly calls: string[] = [];
  readonly containers = new Map<string, Container>();
  readonly volumes = new Map<string, Volume>();
  /** docker.dataVolumes as the stack's config holds it (undefined: no key). */
  config?: Record<string, string>;
  /** docker.primaryPort, when the config fixes it. */
  primaryPort?: number;
  /** The host port Docker published each container's PostgreSQL on. */
  hostPorts = new Map<string, number>();
  /** The primary's port as the stack's outputs name it (from the last up). */
  outputPort = 32768;
  /** The primary's archiver keeps up (false: it fails, as with a missing stanza). */
  archiving = true;
  /** pg_isready's exit code in the primary container (0 accepting, 1 starting up or recovering). */
  primaryReady = 0;
  /** The next `pg_ctl promote` is asked for, then nbdb dies before the server finishes it. */
  dieWhilePromoting = false;
  /** What a replica has received beyond its replay, by container (failover picks the most). */
  received = new Map<string, number>();
  /** The target replays the primary's shutdown checkpoint (false: it lags forever). */
  replays = true;
  previewClean = true;
  /** The call (a prefix of its line) at which the runner dies, as a crashed nbdb would. */
  crashAt?: string;

  constructor(readonly replicas: number) {
    for (const role of this.roles) {
      this.volumes.set(this.volumeOf(role), { state: role === "primary" ? "in production" : "in archive recovery", standby: role !== "primary", lsn: 1000, slots: new Set() });
      this.containers.set(this.containerOf(role), { role, volume: this.volumeOf(role), status: "running" });
      this.hostPorts.set(role, 32768 + this.hostPorts.size);
    }
    const primary = this.volumes.get(this.volumeOf("primary"))!;
    primary.checkpointed = true;
    for (let i = 0; i < replicas; i++) primary.slots.add(`replica_${i}`);
  }

  get roles(): string[] {
    return ["primary", ...Array.from({ length: this.replicas }, (_, i) => `replica-${i}`)];
  }
  containerOf = (role: string) => `nbdb-${role}-review-x`;
  volumeOf = (role: string) => `nbdb-${role}-data-review-x`;

  get output(): DockerStackOutput {
    const ref = (role: string) => ({ container: this.containerOf(role), urn: `urn:pulumi:review-x::neuralblitz-db::docker:index/container:Container::nbdb-${role}` });
    return {
      primary: ref("primary"),
      replicas: this.roles.slice(1).map(ref),
      pooler: ref("pooler"),
      backup: ref("backup"),
      volumes: Object.fromEntries(this.roles.map((r) => [r, this.volumeOf(r)])),
      dataDir: "/var/lib/postgresql/data",
    };
  }

  /** Which role's volume each container mounts. */
  get mounts(): Record<string, string> {
    const byVolume = new Map(this.roles.map((r) => [this.volumeOf(r), r]));
    return Object.fromEntries([...this.containers.values()].map((c) => [c.role, byVolume.get(c.volume)!]));
  }

  /** The role each volume would be mounted by under the config. */
  volumeFor(role: string): string {
    return this.volumeOf(this.config?.[role] ?? role);
  }

  /** Servers that accept writes now: never more than one. */
  get primaries(): string[] {
    return [...this.containers.values()].filter((c) => c.status === "running" && !this.volumes.get(c.volume)!.standby).map((c) => c.role);
  }

  running(role: string): Container | undefined {
    const c = this.containers.get(this.containerOf(role));
    return c?.status === "running" ? c : undefined;
  }

  private stop(c: Container): void {
    if (c.status !== "running") return void (c.status = "exited");
    c.status = "exited";
    const v = this.volumes.get(c.volume)!;
    if (v.promoting) {
      // A promotion asked for finishes before the server exits (the worst case for a resume).
      v.promoting = false;
      v.standby = false;
    }
    v.state = v.standby ? "shut down in recovery" : "shut down";
    if (!v.standby) {
      v.checkpointed = true; // its shutdown checkpoint names its timeline
      v.lsn += 8; // the shutdown checkpoint, sent to every streaming standby before the server exits
      for (const r of this.roles.slice(1)) {
        const s = this.running(r);
        const sv = s && this.volumes.get(s.volume)!;
        if (sv?.standby && this.replays) sv.lsn = v.lsn + 1;
      }
    }
  }

  /** A container starting on its volume, as its entrypoint would. */
  private start(c: Container): void {
    const v = this.volumes.get(c.volume)!;
    if (c.role === "primary") {
      if (v.standby) return void (c.status = "restarting"); // the entrypoint guard: never a primary on a standby's data
      v.state = "in production";
    } else if (!v.standby) {
      // The bootstrap: a primary's data rewound (needs the primary to run), made a standby of it.
      const p = this.running("primary");
      const pv = p && this.volumes.get(p.volume)!;
      if (!pv || pv.standby || !pv.checkpointed) return void (c.status = "restarting");
      v.standby = true;
      v.state = "in archive recovery";
    } else {
      v.state = "in archive recovery";
    }
    c.status = "running";
  }

  private sql(c: Container, q: string): string {
    const v = this.volumes.get(c.volume)!;
    if (q.includes("pg_stat_replication")) {
      const streaming = this.roles.slice(1).filter((r) => {
        const s = this.running(r);
        return s && this.volumes.get(s.volume)!.standby && !v.standby;
      });
      if (q.includes("application_name, state")) return streaming.map((r) => `${r},streaming,${r === "replica-1" ? 0 : 4096}\n`).join("");
      return streaming.map((r) => `${r}\n`).join("");
    }
    if (q.includes("pg_last_wal_replay_lsn(), '")) {
      const checkpoint = unhex(/'([0-9A-F/]+)'::pg_lsn/.exec(q)![1]);
      return v.lsn > checkpoint ? "t\n" : "f\n";
    }
    if (q.includes("pg_switch_wal")) return "000000010000000000000007\n";
    if (q.includes("pg_stat_archiver")) return this.archiving ? "t,000000010000000000000007,none\n" : "f,000000010000000000000006,000000010000000000000007\n";
    if (q.includes("pg_create_physical_replication_slot")) {
      for (const m of q.matchAll(/\('(replica_\d+)'\)/g)) v.slots.add(m[1]);
      return "";
    }
    if (q.includes("pg_last_wal_receive_lsn")) return `${v.standby ? "t" : "f"},${hex(v.lsn + (this.received.get(c.role) ?? 0))}\n`;
    if (q.includes("pg_is_in_recovery()")) return v.standby ? "t\n" : "f\n";
    if (q === "CHECKPOINT") {
      if (v.standby) throw new Error("CHECKPOINT on a standby: the model expects it on the promoted target only");
      v.checkpointed = true;
      return "";
    }
    throw new Error(`the model has no answer to: ${q}`);
  }

  /** The module's runner, over this model. */
  runner: Runner = async (file, args) => {
    const line = `${file} ${args.join(" ")}`;
    this.calls.push(line);
    if (this.crashAt !== undefined && line.startsWith(this.crashAt)) throw new Error(`crashed at: ${line}`);
    const ok = (stdout = "") => ({ code: 0, stdout, stderr: "" });
    const fail = (stderr: string, code = 1) => ({ code, stdout: "", stderr });
    if (file === "pulumi") {
      if (args[0] === "stack" && args[1] === "output" && args[2] === "primary") return ok(JSON.stringify({ host: "127.0.0.1", port: this.outputPort }));
      if (args[0] === "stack" && args[1] === "output") return ok(JSON.stringify(this.output));
      // A targeted refresh: the containers nbdb removed leave the state (the model keeps none).
      if (args[0] === "refresh") return args.includes("--target") ? ok() : fail("a refresh of the whole stack asks the database layer, whose server is down");
      if (args[0] === "preview") return this.previewClean ? ok() : fail("error: no changes were expected but changes were proposed");
      if (args[0] === "config" && args[1] === "get") {
        // As the CLI prints --json: the value wrapped.
        const value = args[3] === "docker.dataVolumes" ? this.config : this.primaryPort;
        if (value === undefined) return fail(`error: configuration key '${args[3]}' not found for stack 'review-x'`);
        return ok(JSON.stringify({ value: JSON.stringify(value), ...(typeof value === "object" ? { objectValue: value } : {}), secret: false }, null, 2));
      }
      if (args[0] === "config" && args[1] === "set-all") {
        for (const a of args) {
          const m = /^docker\.dataVolumes\["([^"]+)"\]=(.+)$/.exec(a);
          if (m) (this.config ??= {})[m[1]] = m[2];
          const port = /^docker\.primaryPort=(\d+)$/.exec(a);
          if (port) this.primaryPort = Number(port[1]);
        }
        return ok();
      }
      if (args[0] === "config" && args[1] === "rm" && args[3] === "docker.dataVolumes") {
        this.config = undefined;
        return ok();
      }
      if (args[0] === "config" && args[1] === "rm" && args[3] === "docker.primaryPort") {
        this.primaryPort = undefined;
        return ok();
      }
      if (args[0] === "up") {
        // The program (after the refresh): a removed container made again, a container on another
        // volume than the config gives its role replaced; they start the primary first (the replicas depend on it).
        const replaced: Container[] = [];
        const targeted = args.filter((_, i) => args[i - 1] === "--target").map((urn) => urn.split("::nbdb-")[1]);
        for (const role of this.roles.filter((r) => targeted.length === 0 || targeted.includes(r))) {
          const name = this.containerOf(role);
          const c = this.containers.get(name);
          if (!c) {
            const made: Container = { role, volume: this.volumeFor(role), status: "exited" };
            this.containers.set(name, made);
            this.hostPorts.set(role, role === "primary" && this.primaryPort !== undefined ? this.primaryPort : 40000 + this.calls.length);
            replaced.push(made);
          } else if (c.volume !== this.volumeFor(role)) {
            this.stop(c);
            c.volume = this.volumeFor(role);
            replaced.push(c);
          }
        }
        for (const c of replaced.sort((a) => (a.role === "primary" ? -1 : 1))) this.start(c);
        this.outputPort = this.hostPorts.get("primary")!;
        const broken = replaced.filter((c) => c.status !== "running");
        return broken.length ? fail(`error: container ${broken[0].role} did not become healthy`) : ok();
      }
    }
    if (file === "docker") {
      const name = args[0] === "exec" ? args[args[1] === "-u" ? 3 : 1] : args[args.length - 1];
      if (args[0] === "container" && args[1] === "inspect") {
        // The backup container runs the servers' image (and mounts the primary's volume read-only, not modelled).
        if (args[2] === this.containerOf("backup")) return ok(JSON.stringify([{ State: { Status: "running", Running: true }, Image: "sha256:image", Mounts: [] }]));
        const c = this.containers.get(args[2]);
        if (!c) return fail(`Error: No such container: ${args[2]}`);
        return ok(
          JSON.stringify([
            {
              State: { Status: c.status, Running: c.status === "running" },
              Image: "sha256:image",
              Mounts: [{ Type: "volume", Name: c.volume, Destination: "/var/lib/postgresql/data" }],
            },
          ]),
        );
      }
      if (args[0] === "run") {
        const volume = args[args.indexOf("-v") + 1].split(":")[0];
        const v = this.volumes.get(volume)!;
        return ok(`Database cluster state:               ${v.state}\nLatest checkpoint location:           ${hex(v.lsn)}\n${v.standby ? "standby.signal: present\n" : ""}`);
      }
      const c = this.containers.get(name);
      if (!c) return fail(`Error: No such container: ${name}`);
      if (args[0] === "stop") return this.stop(c), ok(name);
      if (args[0] === "rm") {
        if (c.status === "running") return fail(`Error: cannot remove container ${name}: container is running`);
        this.containers.delete(name);
        return ok(name);
      }
      if (args[0] === "start") return this.start(c), c.status === "running" ? ok(name) : fail("container restarting");
      if (args[0] === "exec") {
        if (c.status !== "running") return fail(`Error: container ${name} is not running`);
        const v = this.volumes.get(c.volume)!;
        if (args.includes("pg_isready")) return c.role === "primary" && this.primaryReady !== 0 ? { code: this.primaryReady, stdout: "", stderr: "" } : ok();
        if (args.includes("pg_ctl") && this.dieWhilePromoting) {
          this.dieWhilePromoting = false;
          v.promoting = true;
          throw new Error(`crashed while ${name} promotes`);
        }
        if (args.includes("pg_ctl")) {
          v.standby = false;
          v.state = "in production";
          return ok("server promoted");
        }
        return ok(this.sql(c, args[args.indexOf("-c") + 1]));
      }
    }
    throw new Error(`the model does not know: ${line}`);
  };

  options(extra: { to?: string } = {}) {
    return { stack: "review-x", runner: this.runner, sleep: async () => undefined, ...extra };
  }

  /** A switchover to `to` that dies at the call starting with `at` (as a killed nbdb would), leaving the host as it was then. */
  async interruptedSwitchover(at: string, to = "replica-0"): Promise<void> {
    this.crashAt = at;
    expect(await rejection(dockerSwitchover(this.options({ to })))).to.include("crashed at");
    this.crashAt = undefined;
  }

  /** The index of the first call starting with `prefix`. */
  at(prefix: string): number {
    const i = this.calls.findIndex((c) => c.startsWith(prefix));
    expect(i, `a call ${prefix}`).to.be.greaterThan(-1);
    return i;
  }
}

const PROMOTE = "docker exec -u postgres nbdb-replica-1-review-x pg_ctl promote";

describe("switchover and failover of a Docker stack (docker CLI and pulumi under a model of the host)", function () {
  it("switchover: the record first, the primary stopped cleanly, the target past its shutdown checkpoint, promoted, its slots, then pulumi up swaps the volumes", async function () {
    const host = new DockerHost(2);
    const r = await dockerSwitchover(host.options({ to: "replica-1" }));
    const set = host.at("pulumi config set-all");
    const stop = host.at("docker stop -t 120 nbdb-primary-review-x");
    const control = host.at("docker run --rm --network none -u postgres -v nbdb-primary-data-review-x:/d:ro");
    const replayed = host.calls.findIndex((c) => c.includes("pg_last_wal_replay_lsn(), '"));
    const promote = host.at(PROMOTE);
    const checkpoint = host.calls.findIndex((c) => c.endsWith("-c CHECKPOINT"));
    const slots = host.calls.findIndex((c) => c.includes("pg_create_physical_replication_slot"));
    const stopTarget = host.at("docker stop -t 120 nbdb-replica-1-review-x");
    const removed = host.at("docker rm nbdb-primary-review-x");
    const up = host.at("pulumi up --yes");
    const archived = host.calls.findIndex((c) => c.includes("pg_switch_wal"));
    const order = [archived, set, stop, control, replayed, promote, checkpoint, slots, stopTarget, removed, up];
    expect(order).to.deep.equal([...order].sort((a, b) => a - b));
    expect(host.calls[slots]).to.include("nbdb-replica-1-review-x").and.include("replica_0").and.include("replica_1");
    expect(host.config).to.deep.equal({ primary: "replica-1", "replica-0": "replica-0", "replica-1": "primary" });
    expect(host.mounts).to.deep.equal({ primary: "replica-1", "replica-0": "replica-0", "replica-1": "primary" });
    // The old primary's data is a standby now, the promoted data the primary's; every container runs.
    expect(host.volumes.get(host.volumeOf("primary"))!.standby).to.equal(true);
    expect(host.volumes.get(host.volumeOf("replica-1"))!.standby).to.equal(false);
    expect([...host.containers.values()].every((c) => c.status === "running")).to.equal(true);
    expect([...host.volumes.get(host.volumeOf("replica-1"))!.slots]).to.include.members(["replica_0", "replica_1"]);
    expect(r.primaryData).to.equal("replica-1");
    // The primary's host port, which Docker chose, is pinned by the record: the new container publishes the same one.
    expect(host.primaryPort).to.equal(32768);
    expect(host.hostPorts.get("primary")).to.equal(32768);
    expect(r.steps.join("\n")).to.include("every replica streams from the new primary");
  });

  it("switchover without --to promotes the replica with the least lag", async function () {
    const host = new DockerHost(2);
    await dockerSwitchover(host.options());
    expect(host.mounts.primary).to.equal("replica-1");
  });

  it("a second switchover moves the volumes on from where the first left them (a cycle of three)", async function () {
    const host = new DockerHost(2);
    await dockerSwitchover(host.options({ to: "replica-1" }));
    await dockerSwitchover(host.options({ to: "replica-0" }));
    expect(host.config).to.deep.equal({ primary: "replica-0", "replica-0": "replica-1", "replica-1": "primary" });
    expect(host.mounts).to.deep.equal(host.config);
    expect(host.volumes.get(host.volumeOf("replica-0"))!.standby).to.equal(false);
  });

  it("a target that does not replay the primary's last WAL: refused and undone, nothing promoted, the config as it was", async function () {
    const host = new DockerHost(1);
    host.replays = false;
    const message = await rejection(dockerSwitchover(host.options({ to: "replica-0" })));
    expect(message).to.include("refused and undone").and.include("replay the old primary's last WAL");
    expect(host.calls.some((c) => c.includes("pg_ctl promote"))).to.equal(false);
    expect(host.calls.some((c) => c.startsWith("pulumi up"))).to.equal(false);
    // The stack had no key: it has none again, so the program's inputs are what they were.
    expect(host.config).to.equal(undefined);
    expect(host.running("primary")).to.not.equal(undefined);
    expect(host.volumes.get(host.volumeOf("primary"))!.standby).to.equal(false);
  });

  it("a switchover undone on a stack that had switched before restores its key as it was", async function () {
    const host = new DockerHost(1);
    await dockerSwitchover(host.options({ to: "replica-0" }));
    host.replays = false;
    await rejection(dockerSwitchover(host.options({ to: "replica-0" })));
    expect(host.config).to.deep.equal({ primary: "replica-0", "replica-0": "primary" });
    expect(host.mounts).to.deep.equal(host.config);
  });

  it("a primary whose WAL archive is behind: refused before anything is recorded or stopped", async function () {
    const host = new DockerHost(1);
    host.archiving = false;
    const message = await rejection(dockerSwitchover(host.options({ to: "replica-0" })));
    expect(message).to.include("did not archive WAL segment 000000010000000000000007").and.include("last failed 000000010000000000000007").and.include("Nothing was changed");
    expect(host.calls.filter((c) => /^docker (stop|start|run|rm)|^pulumi (config set|config rm|up)/.test(c))).to.deep.equal([]);
  });

  it("a Docker-chosen port the config could not hold: refused before anything is recorded or stopped", async function () {
    const host = new DockerHost(1);
    host.outputPort = 65533;
    expect(await rejection(dockerSwitchover(host.options({ to: "replica-0" })))).to.include("port 65533, outside 1024-65530").and.include("pulumi config set --path docker.primaryPort");
    expect(host.calls.filter((c) => /^docker (stop|start|run|rm)|^pulumi (config set|config rm|up)/.test(c))).to.deep.equal([]);
  });

  it("the deploy: only the removed containers refreshed, the primary made first and every slot on it before the rest", async function () {
    const host = new DockerHost(2);
    await dockerSwitchover(host.options({ to: "replica-1" }));
    const refresh = host.at("pulumi refresh --yes --skip-preview --target urn:pulumi:review-x::neuralblitz-db::docker:index/container:Container::nbdb-primary --target urn:pulumi:review-x::neuralblitz-db::docker:index/container:Container::nbdb-replica-1");
    const first = host.at("pulumi up --yes --skip-preview --target urn:pulumi:review-x::neuralblitz-db::docker:index/container:Container::nbdb-primary --stack");
    const slots = host.calls.findIndex((c, i) => i > first && c.startsWith("docker exec -u postgres nbdb-primary-review-x") && c.includes("pg_create_physical_replication_slot"));
    const rest = host.calls.findIndex((c) => c.startsWith("pulumi up --yes --skip-preview --stack"));
    expect(refresh).to.be.lessThan(first);
    expect(slots).to.be.greaterThan(first).and.lessThan(rest);
  });

  it("a configured primary port is left as it is", async function () {
    const host = new DockerHost(1);
    host.primaryPort = 15432;
    await dockerSwitchover(host.options({ to: "replica-0" }));
    expect(host.calls.find((c) => c.startsWith("pulumi config set-all"))).to.not.include("docker.primaryPort");
  });

  for (const [what, prepare, expected] of [
    ["a replica that does not stream", (h: DockerHost) => (h.containers.get(h.containerOf("replica-0"))!.status = "exited"), "is not streaming from the primary"],
    ["undeployed changes of the stack", (h: DockerHost) => (h.previewClean = false), "has changes that are not deployed"],
    ["a stopped primary", (h: DockerHost) => (h.containers.get(h.containerOf("primary"))!.status = "exited"), "npx nbdb failover --pulumi-stack review-x"],
  ] as const) {
    it(`switchover refuses ${what}, changing nothing`, async function () {
      const host = new DockerHost(1);
      prepare(host);
      const before = JSON.stringify([...host.containers.values()]);
      expect(await rejection(dockerSwitchover(host.options({ to: "replica-0" })))).to.include(expected);
      expect(host.calls.filter((c) => /^docker (stop|start|run)|^pulumi (config set|up)/.test(c))).to.deep.equal([]);
      expect(JSON.stringify([...host.containers.values()])).to.equal(before);
    });
  }

  it("switchover refuses an unfinished earlier change (the config names other volumes than the containers mount) and names --resume", async function () {
    const host = new DockerHost(1);
    host.config = { primary: "replica-0", "replica-0": "primary" };
    const message = await rejection(dockerSwitchover(host.options()));
    expect(message).to.include("unfinished").and.include("npx nbdb switchover --pulumi-stack review-x --resume");
    expect(host.calls.filter((c) => /^docker (stop|start)|^pulumi (config set|up)/.test(c))).to.deep.equal([]);
  });

  it("a stack without the docker output (another platform) is refused with what to do", async function () {
    const host = new DockerHost(1);
    const runner: Runner = async (file, args) => (file === "pulumi" && args[0] === "stack" ? { code: 0, stdout: "", stderr: "" } : host.runner(file, args));
    expect(await rejection(dockerSwitchover({ stack: "prod", runner }))).to.include("has no 'docker' output").and.include("Multi-AZ");
  });

  describe("failover", function () {
    it("refuses while the primary is starting up or recovering from a crash (pg_isready 1): it comes back with every commit", async function () {
      const host = new DockerHost(1);
      host.primaryReady = 1;
      expect(await rejection(dockerFailover(host.options()))).to.include("is starting up (or recovering from a crash)").and.include("Nothing was changed");
      expect(host.calls.filter((c) => /^docker (stop|start|rm)|^pulumi (config set|up)/.test(c))).to.deep.equal([]);
    });

    it("refuses while the primary accepts connections, changing nothing", async function () {
      const host = new DockerHost(1);
      expect(await rejection(dockerFailover(host.options()))).to.include("is running and accepts connections").and.include("npx nbdb switchover --pulumi-stack review-x");
      expect(host.calls.filter((c) => /^docker (stop|start)|^pulumi (config set|up)/.test(c))).to.deep.equal([]);
    });

    it("pins the primary's port from the stack's outputs (a stopped primary shows none), so the primary made again publishes it", async function () {
      const host = new DockerHost(1);
      host.containers.get(host.containerOf("primary"))!.status = "exited";
      await dockerFailover(host.options());
      expect(host.primaryPort).to.equal(32768);
      expect(host.hostPorts.get("primary")).to.equal(32768);
    });

    it("the primary gone: the replica that received the most WAL is promoted, the old primary's volume re-attached as that replica", async function () {
      const host = new DockerHost(2);
      host.containers.get(host.containerOf("primary"))!.status = "restarting";
      host.received.set("replica-0", 64);
      const r = await dockerFailover(host.options());
      expect(r.steps[0]).to.include("most advanced replica: replica-0");
      expect(host.at("docker stop -t 120 nbdb-primary-review-x")).to.be.lessThan(host.at("pulumi config set-all"));
      expect(host.at("pulumi config set-all")).to.be.lessThan(host.at("docker exec -u postgres nbdb-replica-0-review-x pg_ctl promote"));
      expect(host.mounts).to.deep.equal({ primary: "replica-0", "replica-0": "primary", "replica-1": "replica-1" });
      expect(host.volumes.get(host.volumeOf("primary"))!.standby).to.equal(true);
      expect([...host.containers.values()].every((c) => c.status === "running")).to.equal(true);
    });
  });

  describe("--resume heals an interrupted change", function () {
    it("after the promotion (nbdb died before pulumi up): finished, the volumes exchanged", async function () {
      const host = new DockerHost(1);
      await host.interruptedSwitchover("docker stop -t 120 nbdb-replica-0-review-x");
      expect(host.volumes.get(host.volumeOf("replica-0"))!.standby).to.equal(false);
      const r = await dockerResume(host.options());
      expect(r.steps.join("\n")).to.include("is promoted: finishing");
      expect(host.mounts).to.deep.equal({ primary: "replica-0", "replica-0": "primary" });
      expect(host.volumes.get(host.volumeOf("primary"))!.standby).to.equal(true);
      expect([...host.containers.values()].every((c) => c.status === "running")).to.equal(true);
    });

    it("before the promotion (the primary stopped, the config written): undone, the old primary running with every commit", async function () {
      const host = new DockerHost(1);
      await host.interruptedSwitchover(PROMOTE.replace("replica-1", "replica-0"));
      expect(host.running("primary")).to.equal(undefined);
      const r = await dockerResume(host.options());
      expect(r.steps.join("\n")).to.include("was never promoted: undone");
      expect(host.calls.some((c) => c.startsWith("pulumi up"))).to.equal(false);
      expect(host.config).to.deep.equal({ primary: "primary", "replica-0": "replica-0" });
      expect(host.running("primary")).to.not.equal(undefined);
      expect(host.volumes.get(host.volumeOf("primary"))!.standby).to.equal(false);
    });

    it("a pulumi up run by hand before the promotion (the primary container refuses the standby's volume): the volumes moved back", async function () {
      const host = new DockerHost(1);
      await host.interruptedSwitchover(PROMOTE.replace("replica-1", "replica-0"));
      await host.runner("pulumi", ["up", "--yes"]);
      expect(host.containers.get(host.containerOf("primary"))!.status).to.equal("restarting");
      const r = await dockerResume(host.options());
      expect(r.steps.join("\n")).to.include("was never promoted: undone");
      expect(host.mounts).to.deep.equal({ primary: "primary", "replica-0": "replica-0" });
      expect(host.volumes.get(host.volumeOf("primary"))!.standby).to.equal(false);
      expect([...host.containers.values()].every((c) => c.status === "running")).to.equal(true);
    });

    it("nbdb died while the target promoted (still in recovery when asked): the target is stopped before deciding, and the finished promotion is finished, never undone into two primaries", async function () {
      const host = new DockerHost(1);
      host.dieWhilePromoting = true;
      await rejection(dockerSwitchover(host.options({ to: "replica-0" })));
      expect(host.volumes.get(host.volumeOf("replica-0"))!.promoting).to.equal(true);
      const r = await dockerResume(host.options());
      expect(r.steps.join("\n")).to.include("is promoted: finishing");
      expect(host.primaries).to.deep.equal(["primary"]);
      expect(host.mounts).to.deep.equal({ primary: "replica-0", "replica-0": "primary" });
      expect([...host.containers.values()].every((c) => c.status === "running")).to.equal(true);
    });

    it("a container removed before the deploy (nbdb died there): made again by the resume", async function () {
      const host = new DockerHost(1);
      await host.interruptedSwitchover("pulumi up");
      expect(host.containers.has(host.containerOf("primary"))).to.equal(false);
      await dockerResume(host.options());
      expect(host.mounts).to.deep.equal({ primary: "replica-0", "replica-0": "primary" });
      expect(host.primaries).to.deep.equal(["primary"]);
    });

    it("refused when no volume holds a primary's data: what it stopped to read runs again", async function () {
      const host = new DockerHost(1);
      host.config = { primary: "replica-0", "replica-0": "primary" };
      const v = host.volumes.get(host.volumeOf("primary"))!;
      v.standby = true;
      v.state = "shut down in recovery";
      host.containers.get(host.containerOf("primary"))!.status = "exited";
      const message = await rejection(dockerResume(host.options()));
      expect(message).to.include("no other volume holds a primary's data").and.include("pg_ctl promote");
      expect(host.calls).to.include("docker stop -t 120 nbdb-replica-0-review-x");
      expect(host.running("replica-0")).to.not.equal(undefined);
    });

    it("a deploy that stopped half way (the last up failed): the resume runs the rest of the up", async function () {
      const host = new DockerHost(1);
      await host.interruptedSwitchover("pulumi up --yes --skip-preview --stack");
      // The primary is made on its new volume; what the last up would have done (the replica, the backup container) is not.
      expect(host.mounts.primary).to.equal("replica-0");
      host.previewClean = false;
      const r = await dockerResume(host.options());
      expect(r.steps.join("\n")).to.include("pulumi up: finished what the interrupted deploy left undone");
      expect(host.mounts).to.deep.equal({ primary: "replica-0", "replica-0": "primary" });
      expect(host.primaries).to.deep.equal(["primary"]);
    });

    it("with nothing interrupted: says so and changes nothing", async function () {
      const host = new DockerHost(1);
      const r = await dockerResume(host.options());
      expect(r.steps).to.deep.equal(["nothing to finish: every container mounts the volume the config gives it and runs"]);
      expect(host.calls.filter((c) => /^docker (stop|start)|^pulumi (config set|up)/.test(c))).to.deep.equal([]);
    });
  });
});
