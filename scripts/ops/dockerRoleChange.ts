// `nbdb switchover` and `nbdb failover` on a Docker stack (`--pulumi-stack`, docs/switchover.md
// "Docker stacks"). The containers keep their roles (names, certificates, ports, the pooler's
// `[databases]` line, the outputs); the data volumes change hands: config `docker.dataVolumes` says
// which role's volume each container mounts (infra/config.ts). The steps a `pulumi up` cannot order
// (the primary stopped cleanly, the target confirmed past its shutdown checkpoint, promoted, every
// replica's slot made on it) run here through the docker CLI; then a `pulumi up` of exactly the
// containers whose mount changes makes the promoted volume the primary container's and the old
// primary's volume replica-<target>'s, whose bootstrap rewinds it into a standby
// (infra/topology/replicaBootstrap.ts).
//
// The config key is the record of the operation: it is written before anything stops, and a crash
// anywhere leaves the config naming other volumes than the containers mount, which `--resume`
// finishes (the target was promoted) or undoes (it was not). Every docker and pulumi call goes
// through one injectable runner, so the tests check the exact sequence without a Docker engine.
import { execFile } from "child_process";
import { ensureSlotsSql, lsnValue, replicaApplicationName, replicaSlotName } from "../../infra/topology/replicaBootstrap";
import { parseReplicaNode } from "../local/switchover";
import { ContainerRef, DockerContainers } from "../../infra/platform/types";
import { DOCKER_HOST_PORTS } from "../../infra/config";
import { UserError } from "../errors";
import { pulumiCli } from "./target";

/** One program run: its exit code and output; never throws for a non-zero exit. */
export type Runner = (file: string, args: readonly string[], opts?: { readonly timeoutMs?: number }) => Promise<{ code: number; stdout: string; stderr: string }>;

/** The real runner: the docker CLI on PATH, the pulumi CLI where `pulumiCli` finds it. */
export const systemRunner: Runner = (file, args, opts = {}) =>
  new Promise((resolve) =>
    execFile(
      file === "pulumi" ? (pulumiCli() ?? "pulumi") : file,
      [...args],
      { maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 10 * 60_000, env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "1" } },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException).code === "number" ? ((err as unknown as { code: number }).code) : 127) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr || (err && code === 127 ? err.message : "")) });
      },
    ),
  );

/** The program's `docker` stack output (infra/platform/docker.ts, docs/contracts.md "Outputs"). */
export type DockerStackOutput = DockerContainers;
type DockerNode = ContainerRef;

export interface DockerRoleChangeOptions {
  /** The Pulumi stack (run in the Pulumi project's directory). */
  readonly stack: string;
  readonly log?: (line: string) => void;
  readonly runner?: Runner;
  /** How the command waits between polls (tests pass one that does not). */
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface DockerRoleChangeResult {
  readonly kind: "switchover" | "failover" | "resume";
  readonly stack: string;
  /** The role whose data the primary container now mounts; undefined when a resume undid the change. */
  readonly primaryData?: string;
  readonly steps: string[];
}

/** How long the target may take to replay the old primary's last WAL, and a container to stop. */
const REPLAY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_S = 120;
const STREAM_TIMEOUT_MS = 120_000;
const POLL_MS = 500;
const ARCHIVE_TIMEOUT_MS = 60_000;

type Role = string;
const PRIMARY: Role = "primary";
const replicaRole = (i: number): Role => `replica-${i}`;


interface ContainerState {
  readonly exists: boolean;
  readonly running: boolean;
  readonly status: string;
  readonly image?: string;
  /** The volume mounted on the data directory. */
  readonly volume?: string;
}

/** What the stack is now: each role's container, the volume it mounts, and what the config asks. */
interface Survey {
  readonly roles: readonly Role[];
  readonly containers: ReadonlyMap<Role, ContainerState>;
  /** role -> the role whose volume its container mounts now (undefined: none of the stack's). */
  readonly mounted: ReadonlyMap<Role, Role | undefined>;
  /** role -> the role whose volume the config gives it. */
  readonly wanted: ReadonlyMap<Role, Role>;
  /** Whether the config has docker.dataVolumes at all (absent: the program adds no primary guard). */
  readonly keyed: boolean;
  /** docker.primaryPort, when the config fixes it. */
  readonly primaryPort?: number;
  readonly pending: boolean;
}

class DockerStack {
  readonly run: Runner;
  readonly log: (line: string) => void;
  readonly sleep: (ms: number) => Promise<void>;
  /** Containers `isPrimaryData` stopped to read their volume: started again when the resume is refused. */
  readonly settled: string[] = [];
  constructor(
    readonly stack: string,
    readonly out: DockerStackOutput,
    opts: DockerRoleChangeOptions,
  ) {
    this.run = opts.runner ?? systemRunner;
    this.log = opts.log ?? (() => undefined);
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  get roles(): Role[] {
    return [PRIMARY, ...this.out.replicas.map((_, i) => replicaRole(i))];
  }

  node(role: Role): DockerNode {
    if (role === PRIMARY) return this.out.primary;
    return this.out.replicas[Number(role.slice("replica-".length))];
  }

  /** A docker command that must succeed; its failure names the command and what docker said. */
  async docker(args: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.run("docker", args, { timeoutMs });
    if (r.code !== 0) throw new Error(`docker ${args.slice(0, 2).join(" ")} failed (exit code ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-2).join(" ")}`);
    return r.stdout;
  }

  async pulumi(args: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.run("pulumi", [...args, "--stack", this.stack, "--non-interactive"], { timeoutMs });
    if (r.code !== 0) throw new Error(`pulumi ${args.slice(0, 2).join(" ")} --stack ${this.stack} failed (exit code ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" ")}`);
    return r.stdout;
  }

  async inspect(container: string): Promise<ContainerState> {
    const r = await this.run("docker", ["container", "inspect", container]);
    if (r.code !== 0) return { exists: false, running: false, status: "missing" };
    const [c] = JSON.parse(r.stdout) as {
      State: { Status: string; Running: boolean };
      Image: string;
      Mounts?: { Type: string; Name?: string; Destination: string }[];
    }[];
    const mount = (c.Mounts ?? []).find((m) => m.Destination === this.out.dataDir && m.Type === "volume");
    return { exists: true, running: c.State.Running && c.State.Status === "running", status: c.State.Status, image: c.Image, volume: mount?.Name };
  }

  /** One query as the server's OS user over its socket (peer), read-only functions of pg_catalog only: its rows as comma-separated fields. */
  async sql(role: Role, query: string): Promise<string[][]> {
    const out = await this.docker(["exec", "-u", "postgres", this.node(role).container, "psql", "-X", "-At", "-F", ",", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", query]);
    return out.split("\n").filter((l) => l !== "").map((l) => l.split(","));
  }

  /** A config value at `path` (undefined when the stack has none): `pulumi config get --json` prints it wrapped, `{value, objectValue?, secret}`. */
  async configValue(path: string): Promise<unknown> {
    const r = await this.run("pulumi", ["config", "get", "--path", path, "--json", "--stack", this.stack]);
    if (r.code !== 0) {
      if (/not found/i.test(r.stderr + r.stdout)) return undefined;
      throw new Error(`pulumi config get ${path} --stack ${this.stack} failed: ${(r.stderr || r.stdout).trim()}`);
    }
    const w = JSON.parse(r.stdout) as { value?: string; objectValue?: unknown };
    if (w.objectValue !== undefined) return w.objectValue;
    try {
      return w.value === undefined ? undefined : JSON.parse(w.value);
    } catch {
      return w.value;
    }
  }

  /**
   * The record, in one command (set-all): every role's entry, and the primary's host port when the
   * config leaves it to Docker (a container made again would get another; the same value as
   * published changes nothing in the program's inputs). The file never holds half a change.
   */
  async writeVolumes(map: ReadonlyMap<Role, Role>, pinPort?: number): Promise<void> {
    const args = ["config", "set-all", "--path"];
    for (const [role, home] of map) args.push("--plaintext", `docker.dataVolumes["${role}"]=${home}`);
    if (pinPort !== undefined) args.push("--plaintext", `docker.primaryPort=${pinPort}`);
    await this.pulumi(args);
  }

  /** The config as it was before a change that is undone: the key removed when there was none, so the program's inputs are what they were. */
  async restoreVolumes(survey: Survey, pinned: boolean): Promise<void> {
    if (survey.keyed) await this.writeVolumes(new Map(survey.roles.map((r) => [r, survey.wanted.get(r)!])));
    else await this.pulumi(["config", "rm", "--path", "docker.dataVolumes"]);
    if (pinned) await this.pulumi(["config", "rm", "--path", "docker.primaryPort"]);
  }

  async survey(): Promise<Survey> {
    const roles = this.roles;
    const byVolume = new Map(Object.entries(this.out.volumes).map(([role, volume]) => [volume, role]));
    const containers = new Map<Role, ContainerState>();
    const mounted = new Map<Role, Role | undefined>();
    for (const role of roles) {
      const state = await this.inspect(this.node(role).container);
      containers.set(role, state);
      mounted.set(role, state.volume === undefined ? undefined : byVolume.get(state.volume));
    }
    const value = await this.configValue("docker.dataVolumes");
    const cfg = (value && typeof value === "object" && !Array.isArray(value) ? value : {}) as Record<Role, unknown>;
    const wanted = new Map(roles.map((r) => [r, typeof cfg[r] === "string" ? (cfg[r] as Role) : r]));
    const port = await this.configValue("docker.primaryPort");
    // A missing container counts too: the change that removed it is not finished (or it is to be made again).
    const pending = roles.some((r) => mounted.get(r) !== wanted.get(r));
    return { roles, containers, mounted, wanted, keyed: value !== undefined, primaryPort: typeof port === "number" ? port : undefined, pending };
  }

  /** The data directory's control file (and whether it is a standby's), read from the volume by a throw-away container. */
  async volumeState(volume: string, image: string): Promise<{ state: string; checkpoint: string; standbySignal: boolean }> {
    const script = `LC_ALL=C pg_controldata /d; if [ -e /d/standby.signal ]; then echo 'standby.signal: present'; fi`;
    // A volume without a cluster has no control file: its state reads as "".
    const { stdout: out } = await this.run("docker", ["run", "--rm", "--network", "none", "-u", "postgres", "-v", `${volume}:/d:ro`, "--entrypoint", "/bin/sh", image, "-c", script]);
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(out)?.[1]?.trim() ?? "";
    return { state: field("Database cluster state"), checkpoint: field("Latest checkpoint location"), standbySignal: /^standby\.signal: present$/m.test(out) };
  }

  async waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (let tries = 0; ; tries++) {
      try {
        const v = await probe();
        if (v !== undefined) return v;
      } catch (e) {
        last = ` (last: ${(e as Error).message})`;
      }
      if (Date.now() > deadline || tries * POLL_MS > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last}`);
      await this.sleep(POLL_MS);
    }
  }

  async isInRecovery(role: Role): Promise<boolean> {
    const [[r]] = await this.sql(role, "SELECT pg_catalog.pg_is_in_recovery()");
    return r === "t";
  }

  async promote(role: Role): Promise<void> {
    const c = this.node(role).container;
    await this.docker(["exec", "-u", "postgres", c, "pg_ctl", "promote", "-D", this.out.dataDir, "--wait", "--timeout=120"], 130_000);
    await this.waitFor(`${role} to accept writes`, 60_000, async () => ((await this.isInRecovery(role)) ? undefined : true));
    // Its control file names the new timeline only from its first checkpoint on, and PostgreSQL 15's
    // pg_rewind reads the source's timeline there: the old primary's bootstrap waits for it.
    await this.sql(role, "CHECKPOINT");
  }

  /** Every replica's slot on the server of `role`, WAL reserved now (slots are not replicated); a lost one made again. */
  async ensureSlots(role: Role): Promise<void> {
    if (this.out.replicas.length > 0) await this.sql(role, ensureSlotsSql(this.out.replicas.map((_, i) => replicaSlotName(i))));
  }

  /**
   * The primary's current WAL segment finished (pg_switch_wal) and archived, within 60 s: otherwise
   * the archive misses what was committed last, and a switchover is refused (nothing changed yet).
   */
  async archiveCaughtUp(): Promise<void> {
    const [[segment]] = await this.sql(PRIMARY, "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())");
    let seen = "";
    try {
      await this.waitFor(`segment ${segment} in the WAL archive`, ARCHIVE_TIMEOUT_MS, async () => {
        const [[done, last, failed]] = await this.sql(PRIMARY, `SELECT COALESCE(last_archived_wal ~ '^[0-9A-F]{24}$' AND last_archived_wal COLLATE "C" >= '${segment}', false), COALESCE(last_archived_wal, 'none'), COALESCE(last_failed_wal, 'none') FROM pg_catalog.pg_stat_archiver`);
        seen = `last archived ${last}, last failed ${failed}`;
        return done === "t" ? true : undefined;
      });
    } catch {
      throw new UserError(
        `the primary of stack '${this.stack}' did not archive WAL segment ${segment} within ${ARCHIVE_TIMEOUT_MS / 1000} s (${seen}): a switchover now would leave the backups without the last commits. ` +
          `Nothing was changed. Repair archiving first (docker logs ${this.out.primary.container}; the backup container creates the stanza: docker logs ${this.out.backup.container}), then run it again.`,
      );
    }
  }

  /**
   * `pulumi up` of the stack: the containers whose mount the config changed are replaced (and the
   * backup container, which reads the primary's volume); nothing else has changes, which the
   * commands made sure of before they began (`refuseUndeployed`).
   */
  async deploy(roles: readonly Role[]): Promise<void> {
    // Removed here (stopped: their volumes stay) and made anew by the up, rather than replaced by
    // it: a replacement makes the engine weigh replacing every resource that depends on them.
    for (const r of roles) {
      const c = await this.inspect(this.node(r).container);
      if (!c.exists) continue;
      if (c.running) await this.docker(["stop", "-t", String(STOP_TIMEOUT_S), this.node(r).container], (STOP_TIMEOUT_S + 30) * 1000);
      await this.docker(["rm", this.node(r).container]);
    }
    // Only they are refreshed (a refresh of the whole stack would ask the database layer's resources,
    // whose server is down now): gone, they leave the state, and the up makes them again, the
    // primary first on its own, so that every replica's slot is on it before any replica looks.
    const targets = (rs: readonly Role[]) => rs.flatMap((r) => ["--target", this.node(r).urn]);
    await this.pulumi(["refresh", "--yes", "--skip-preview", ...targets(roles)], 10 * 60_000);
    if (roles.includes(PRIMARY)) {
      this.log("pulumi up: the primary container made again on its new volume");
      await this.pulumi(["up", "--yes", "--skip-preview", ...targets([PRIMARY])], 30 * 60_000);
      await this.ensureSlots(PRIMARY);
    }
    this.log(`pulumi up: ${roles.filter((r) => r !== PRIMARY).join(", ") || "the rest"} made again on their new volumes`);
    await this.pulumi(["up", "--yes", "--skip-preview"], 30 * 60_000);
  }

  /**
   * The primary's host port to pin in the record where the config leaves it to Docker: the one the
   * stack's outputs name (a stopped container shows none); refused when the config could not hold it.
   */
  async portToPin(survey: Survey): Promise<number | undefined> {
    if (survey.primaryPort !== undefined) return undefined;
    const r = await this.run("pulumi", ["stack", "output", "primary", "--json", "--stack", this.stack]);
    const port = r.code === 0 ? (JSON.parse(r.stdout) as { port?: unknown }).port : undefined;
    if (typeof port !== "number" || port < DOCKER_HOST_PORTS.min || port > DOCKER_HOST_PORTS.max) {
      throw new UserError(
        `stack '${this.stack}' leaves the primary's host port to Docker, and its outputs name ${typeof port === "number" ? `port ${port}, outside ${DOCKER_HOST_PORTS.min}-${DOCKER_HOST_PORTS.max}` : "none"}: ` +
          `the primary container made again would publish another. Nothing was changed. Fix one first: pulumi config set --path docker.primaryPort <a free port from ${DOCKER_HOST_PORTS.min} to ${DOCKER_HOST_PORTS.max}>, pulumi up; then run this again.`,
      );
    }
    return port;
  }

  /** Refuses (nothing changed) a stack whose program or config has changes not deployed: the closing `pulumi up` must change only the volumes. */
  async refuseUndeployed(): Promise<void> {
    const r = await this.run("pulumi", ["preview", "--expect-no-changes", "--stack", this.stack, "--non-interactive"], { timeoutMs: 10 * 60_000 });
    if (r.code === 0) return;
    throw new UserError(
      `Pulumi stack '${this.stack}' has changes that are not deployed (pulumi preview --expect-no-changes failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-2).join(" ")}); ` +
        `the switchover ends with a pulumi up, which must change nothing else. Deploy them first (pulumi up), then run it again. Nothing was changed.`,
    );
  }

  /** Whether the volume of `home` holds a primary's cluster (not a standby's): asked of a running container that mounts it, else read from the volume. */
  async isPrimaryData(survey: Survey, home: Role, settle = false): Promise<boolean | undefined> {
    const running = survey.roles.find((r) => survey.mounted.get(r) === home && survey.containers.get(r)!.running);
    if (running !== undefined) {
      const standby = await this.isInRecovery(running).catch(() => undefined);
      if (standby === false) return true;
      if (!settle || standby === undefined) return standby === undefined ? undefined : false;
      // A standby now may be one whose promotion was asked for and is under way: stopped, its control
      // file and standby.signal say what it is, and it cannot become a primary behind our back.
      await this.docker(["stop", "-t", String(STOP_TIMEOUT_S), this.node(running).container], (STOP_TIMEOUT_S + 30) * 1000);
      this.settled.push(this.node(running).container);
    }
    // The servers' image, from any server container, else the backup container, which runs it too.
    const image = [...survey.containers.values()].find((c) => c.image)?.image ?? (await this.inspect(this.out.backup.container)).image;
    if (!image) return undefined;
    const v = await this.volumeState(this.out.volumes[home], image);
    if (v.state === "") return undefined;
    return !v.standbySignal && (v.state === "in production" || v.state === "shut down" || v.state === "in crash recovery");
  }

  /** After the deploy: the primary container writes, and each replica streams from it (a line of the steps; never a failure, the bootstrap may still be rewinding). */
  async check(steps: string[]): Promise<void> {
    if (await this.isInRecovery(PRIMARY)) throw new Error(`the primary container ${this.out.primary.container} runs a standby after the deploy (docker logs ${this.out.primary.container}); npx nbdb switchover --pulumi-stack ${this.stack} --resume decides from the volumes what to finish or undo`);
    await this.ensureSlots(PRIMARY);
    const names = this.out.replicas.map((_, i) => replicaApplicationName(i));
    try {
      await this.waitFor("every replica to stream from the new primary", STREAM_TIMEOUT_MS, async () => {
        const rows = await this.sql(PRIMARY, "SELECT application_name FROM pg_catalog.pg_stat_replication WHERE state = 'streaming'");
        const streaming = new Set(rows.map((r) => r[0]));
        return names.every((n) => streaming.has(n)) ? true : undefined;
      });
      steps.push(`every replica streams from the new primary (${names.join(", ") || "none"})`);
    } catch (e) {
      steps.push(`not every replica streams yet (${(e as Error).message}); docker logs <replica container> says why, npx nbdb switchover --pulumi-stack ${this.stack} --resume checks again`);
    }
  }
}

/** The program's `docker` output of a Pulumi stack; a clear error for a stack of another platform. */
async function dockerStack(opts: DockerRoleChangeOptions): Promise<DockerStack> {
  const run = opts.runner ?? systemRunner;
  const r = await run("pulumi", ["stack", "output", "docker", "--json", "--stack", opts.stack]);
  let out: DockerStackOutput | undefined;
  if (r.code === 0) {
    try {
      out = JSON.parse(r.stdout) as DockerStackOutput;
    } catch {
      out = undefined;
    }
  }
  if (!out || typeof out !== "object" || !out.primary || !Array.isArray(out.replicas) || !out.volumes) {
    const said = (r.stderr || r.stdout).trim().split("\n").slice(-1)[0] ?? "";
    throw new UserError(
      `Pulumi stack '${opts.stack}' has no 'docker' output${said ? ` (${said})` : ""}: switchover and failover with --pulumi-stack are for Docker stacks of this program, deployed with pulumi up ` +
        `from the Pulumi project's directory (run nbdb there). On AWS, RDS Multi-AZ fails over by itself (docs/switchover.md); a local stack takes --stack.`,
    );
  }
  return new DockerStack(opts.stack, out, opts);
}

function describeMap(map: ReadonlyMap<Role, Role | undefined>): string {
  return [...map].filter(([r, h]) => r !== h).map(([r, h]) => h === undefined ? `${r} has no container (or mounts no volume of the stack)` : `${r} mounts ${h}'s data`).join(", ") || "every role mounts its own data";
}

function refusePending(s: DockerStack, survey: Survey): void {
  if (!survey.pending) return;
  throw new UserError(
    `an earlier switchover or failover of Docker stack '${s.stack}' is unfinished: the config's docker.dataVolumes says ${describeMap(survey.wanted)}, the containers: ${describeMap(survey.mounted)}. ` +
      `Nothing was changed now. Finish or undo it first: npx nbdb switchover --pulumi-stack ${s.stack} --resume`,
  );
}

/** The roles' volumes with the primary's and `target`'s exchanged: every role listed. */
function exchanged(current: ReadonlyMap<Role, Role | undefined>, roles: readonly Role[], target: Role): Map<Role, Role> {
  const next = new Map(roles.map((r) => [r, current.get(r) ?? r]));
  const primaryHome = next.get(PRIMARY)!;
  next.set(PRIMARY, next.get(target)!);
  next.set(target, primaryHome);
  return next;
}

/** The roles whose container must mount another volume to match `map`. */
function changedRoles(survey: Survey, map: ReadonlyMap<Role, Role>): Role[] {
  return survey.roles.filter((r) => survey.mounted.get(r) !== map.get(r));
}

/** From a promoted target on: its slots, the target stopped, the containers deployed on their new volumes, checked. */
async function rollForward(s: DockerStack, survey: Survey, target: Role, map: ReadonlyMap<Role, Role>, steps: string[]): Promise<void> {
  if ((await s.inspect(s.node(target).container)).running) {
    // Again for a resumed change: the promotion's checkpoint may not have run.
    await s.sql(target, "CHECKPOINT");
    await s.ensureSlots(target);
    steps.push(`made every replica's slot on ${target} (${s.out.replicas.map((_, i) => replicaSlotName(i)).join(", ")})`);
    await s.docker(["stop", "-t", String(STOP_TIMEOUT_S), s.node(target).container], (STOP_TIMEOUT_S + 30) * 1000);
  }
  const roles = changedRoles(survey, map);
  await s.deploy(roles);
  steps.push(`pulumi up: ${roles.map((r) => `${r} on ${map.get(r)}'s data`).join(", ")}; the backup container reads the primary's`);
  await s.check(steps);
}

export async function dockerSwitchover(opts: DockerRoleChangeOptions & { readonly to?: string }): Promise<DockerRoleChangeResult> {
  const s = await dockerStack(opts);
  const survey = await s.survey();
  refusePending(s, survey);
  await s.refuseUndeployed();
  if (s.out.replicas.length === 0) throw new UserError(`Docker stack '${s.stack}' has no replica to switch over to; add one first (pulumi config set replicas 1, pulumi up).`);
  const primary = survey.containers.get(PRIMARY)!;
  if (!primary.running) {
    throw new UserError(`the primary container ${s.out.primary.container} of stack '${s.stack}' is ${primary.status}: a switchover needs it running. Start it (pulumi up), or, if it is lost, promote a replica: npx nbdb failover --pulumi-stack ${s.stack}`);
  }
  const rows = await s.sql(PRIMARY, "SELECT application_name, state, COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn), -1) FROM pg_catalog.pg_stat_replication").catch((e: Error) => {
    throw new UserError(`the primary of stack '${s.stack}' does not answer (${e.message}); nothing was changed.`);
  });
  const lag = new Map(rows.filter((r) => r[1] === "streaming" && Number(r[2]) >= 0).map((r) => [r[0], Number(r[2])]));
  const healthy = s.out.replicas.map((_, i) => replicaRole(i)).filter((r, i) => survey.containers.get(r)!.running && lag.has(replicaApplicationName(i)));
  let target: Role;
  if (opts.to !== undefined) {
    target = replicaRole(parseReplicaNode(opts.to, s.out.replicas.length, s.stack));
    if (!healthy.includes(target)) {
      throw new UserError(`${target} of stack '${s.stack}' is not streaming from the primary, so it may miss commits; nothing was changed. Choose another (${healthy.join(", ") || "none streams"}), or repair it with pulumi up.`);
    }
  } else {
    if (healthy.length === 0) throw new UserError(`no replica of stack '${s.stack}' streams from the primary; nothing was changed. docker logs <replica container> says why; pulumi up repairs them.`);
    const lagOf = (r: Role) => lag.get(replicaApplicationName(Number(r.slice("replica-".length))))!;
    target = healthy.reduce((a, b) => (lagOf(b) < lagOf(a) ? b : a));
  }
  const map = exchanged(survey.mounted, survey.roles, target);
  const steps: string[] = [];
  const behind = s.out.replicas.map((_, i) => replicaRole(i)).filter((r) => r !== target && !healthy.includes(r));
  if (behind.length > 0) steps.push(`not streaming now, so they may need a new base backup after the switchover: ${behind.join(", ")}`);
  // Every finished WAL segment in the archive first, so a point-in-time restore reaches up to the
  // switchover (the promoted target archives the rest: the old timeline's last, partial segment).
  const pin = await s.portToPin(survey);
  await s.archiveCaughtUp();
  steps.push("the primary's WAL archive has every finished segment");
  // The record first: from here a crash leaves the config naming other volumes than the containers mount.
  await s.writeVolumes(map, pin);
  steps.push(`recorded in the stack's config: docker.dataVolumes primary=${map.get(PRIMARY)}, ${target}=${map.get(target)}${pin === undefined ? "" : `, docker.primaryPort=${pin} (the port it publishes now)`}`);
  try {
    s.log(`stopping the primary container (a fast shutdown: its walsenders send every WAL record first)`);
    await s.docker(["stop", "-t", String(STOP_TIMEOUT_S), s.out.primary.container], (STOP_TIMEOUT_S + 30) * 1000);
    const last = await s.volumeState(primary.volume!, primary.image!);
    if (last.state !== "shut down") throw new Error(`the primary did not shut down cleanly (pg_controldata: ${last.state || "unreadable"})`);
    await s.waitFor(`${target} to replay the old primary's last WAL (${last.checkpoint})`, REPLAY_TIMEOUT_MS, async () => {
      const [[past]] = await s.sql(target, `SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '${last.checkpoint}'::pg_lsn) > 0`);
      return past === "t" ? true : undefined;
    });
    steps.push(`stopped the primary at its shutdown checkpoint ${last.checkpoint}; ${target} replayed past it`);
  } catch (e) {
    const why = (e as Error).message;
    try {
      await s.restoreVolumes(survey, pin !== undefined);
      await s.docker(["start", s.out.primary.container]);
    } catch (undo) {
      throw new Error(`switchover to ${target} refused (${why}), and undoing it failed (${(undo as Error).message}): npx nbdb switchover --pulumi-stack ${s.stack} --resume undoes it`);
    }
    throw new UserError(`switchover to ${target} refused and undone (the config restored, the primary started again): ${why}`);
  }
  try {
    await s.promote(target);
    steps.push(`promoted ${target}`);
    await rollForward(s, survey, target, map, steps);
  } catch (e) {
    throw new Error(`switchover to ${target} stopped after the primary's shutdown (${(e as Error).message}); no committed transaction is lost. Finish it: npx nbdb switchover --pulumi-stack ${s.stack} --resume`);
  }
  return { kind: "switchover", stack: s.stack, primaryData: map.get(PRIMARY), steps };
}

export async function dockerFailover(opts: DockerRoleChangeOptions): Promise<DockerRoleChangeResult> {
  const s = await dockerStack(opts);
  const survey = await s.survey();
  refusePending(s, survey);
  await s.refuseUndeployed();
  const primary = survey.containers.get(PRIMARY)!;
  if (primary.running) {
    const ready = await s.run("docker", ["exec", s.out.primary.container, "pg_isready", "-q", "-h", "127.0.0.1"]);
    // pg_isready: 1 is a server that answers but rejects connections, i.e. starting up or in crash
    // recovery: it will come back with every commit, and a failover now would lose some.
    if (ready.code === 1) {
      throw new UserError(
        `the primary container ${s.out.primary.container} of stack '${s.stack}' is running and its server is starting up (or recovering from a crash): it comes back with every commit, a failover now would lose some. Nothing was changed; wait and run pg_isready again (docker exec ${s.out.primary.container} pg_isready -h 127.0.0.1). ` +
          `If it never finishes (docker logs ${s.out.primary.container} says why: a full disk, damaged WAL), stop it (docker stop ${s.out.primary.container}) and run npx nbdb failover --pulumi-stack ${s.stack} again.`,
      );
    }
    if (ready.code === 0) {
      throw new UserError(
        `the primary container ${s.out.primary.container} of stack '${s.stack}' is running and accepts connections: a failover is for a primary that is gone, and would lose what the replicas have not received. ` +
          `For a planned change of primary without loss: npx nbdb switchover --pulumi-stack ${s.stack} [--to replica-N]`,
      );
    }
  }
  const positions: { role: Role; lsn: bigint; text: string }[] = [];
  for (const role of survey.roles.filter((r) => r !== PRIMARY && survey.containers.get(r)!.running)) {
    const rows = await s.sql(role, "SELECT pg_catalog.pg_is_in_recovery(), COALESCE(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())").catch(() => undefined);
    const [standby, lsn] = rows?.[0] ?? [];
    if (standby === "t" && lsn) positions.push({ role, lsn: lsnValue(lsn), text: lsn });
  }
  if (positions.length === 0) {
    throw new UserError(`no replica container of stack '${s.stack}' runs a standby to be promoted; nothing was changed. If the primary's volume is intact, pulumi up starts it again.`);
  }
  const best = positions.reduce((a, b) => (b.lsn > a.lsn ? b : a));
  const pin = await s.portToPin(survey);
  const steps = [`most advanced replica: ${best.role} (received up to ${best.text}; ${positions.map((p) => `${p.role} ${p.text}`).join(", ")})`];
  const map = exchanged(survey.mounted, survey.roles, best.role);
  // The old primary's container must not come back on its own (restart policy) while its volume changes hands.
  if (primary.exists) await s.docker(["stop", "-t", String(STOP_TIMEOUT_S), s.out.primary.container], (STOP_TIMEOUT_S + 30) * 1000);
  await s.writeVolumes(map, pin);
  steps.push(`recorded in the stack's config: docker.dataVolumes primary=${map.get(PRIMARY)}, ${best.role}=${map.get(best.role)}${pin === undefined ? "" : `, docker.primaryPort=${pin}`}`);
  try {
    await s.promote(best.role);
    steps.push(`promoted ${best.role}`);
    await rollForward(s, survey, best.role, map, steps);
  } catch (e) {
    throw new Error(`failover to ${best.role} stopped (${(e as Error).message}). Finish or undo it: npx nbdb switchover --pulumi-stack ${s.stack} --resume`);
  }
  return { kind: "failover", stack: s.stack, primaryData: map.get(PRIMARY), steps };
}

/**
 * After a crash, a failed step or a `pulumi up` run in between: the primary container must mount a
 * primary's data. When the volume the config gives it holds a promoted cluster, the change is
 * finished (the containers deployed onto the config's volumes); when it holds a standby's, nothing
 * was promoted, the old primary's volume still has every commit, and the change is undone (the
 * config names that volume for the primary again, the containers follow it). Either way every
 * server container runs at the end.
 */
export async function dockerResume(opts: DockerRoleChangeOptions): Promise<DockerRoleChangeResult> {
  const s = await dockerStack(opts);
  try {
    return await resume(s);
  } catch (e) {
    if (!(e instanceof UserError) || s.settled.length === 0) throw e;
    // Refused: what was stopped to be read runs again, as it was.
    for (const c of s.settled) await s.docker(["start", c]);
    throw e;
  }
}

async function resume(s: DockerStack): Promise<DockerRoleChangeResult> {
  const survey = await s.survey();
  const steps: string[] = [];
  const home = survey.wanted.get(PRIMARY)!;
  let map: ReadonlyMap<Role, Role> = survey.wanted;
  const promoted = await s.isPrimaryData(survey, home, true);
  if (promoted === false) {
    // The one volume that holds a primary's cluster (the old primary's) goes back to the primary container.
    const primaries: Role[] = [];
    for (const h of survey.roles.map((r) => survey.wanted.get(r)!)) if (h !== home && (await s.isPrimaryData(survey, h))) primaries.push(h);
    if (primaries.length !== 1) {
      throw new UserError(
        `stack '${s.stack}': the primary container's volume (${home}'s) holds a standby, and ${primaries.length === 0 ? "no other volume holds a primary's data" : `several do (${primaries.join(", ")})`}; ` +
          `nothing was changed. Ask each volume what it holds (docker run --rm -u postgres -v <volume>:/d:ro --entrypoint pg_controldata <image of ${s.out.primary.container}, docker inspect -f '{{.Image}}'> /d), ` +
          `promote the one with the most data in the container that mounts it (docker exec -u postgres <container> pg_ctl promote -D ${s.out.dataDir}), then run npx nbdb switchover --pulumi-stack ${s.stack} --resume again.`,
      );
    }
    const holder = survey.roles.find((r) => survey.wanted.get(r) === primaries[0])!;
    map = exchanged(survey.wanted, survey.roles, holder);
    await s.writeVolumes(map);
    steps.push(`${home}'s data was never promoted: undone, the primary container mounts ${primaries[0]}'s again (it has every commit); the config records it`);
  }
  const changed = changedRoles(survey, map);
  if (changed.length > 0 && promoted === undefined) {
    throw new UserError(
      `stack '${s.stack}': the config gives the primary container ${home}'s volume (${s.out.volumes[home]}), and neither a running container that mounts it nor its control file says what it holds; nothing was changed. ` +
        `Check the volumes (docker volume ls) and the containers (docker ps -a; docker logs <container>), then run this again.`,
    );
  }
  if (changed.length > 0) {
    if (promoted !== false) steps.push(`${home}'s data is promoted: finishing the change the config records (${describeMap(map)})`);
    const target = survey.roles.find((r) => r !== PRIMARY && survey.mounted.get(r) === map.get(PRIMARY));
    if (target !== undefined && promoted !== false) {
      await rollForward(s, survey, target, map, steps);
    } else {
      await s.deploy(changed);
      steps.push(`pulumi up: ${changed.map((r) => `${r} on ${map.get(r)}'s data`).join(", ")}`);
    }
  }
  for (const role of survey.roles) {
    const c = await s.inspect(s.node(role).container);
    if (c.exists && !c.running) {
      await s.docker(["start", s.node(role).container]);
      steps.push(`started ${role} (${s.node(role).container})`);
    }
  }
  // A deploy that stopped half way (a container's healthcheck gave up, nbdb died in the up) leaves
  // the rest of the up undone: the commands began with no undeployed change, so what a preview
  // shows now is that rest.
  const preview = await s.run("pulumi", ["preview", "--expect-no-changes", "--stack", s.stack, "--non-interactive"], { timeoutMs: 10 * 60_000 });
  if (preview.code !== 0) {
    await s.pulumi(["up", "--yes", "--skip-preview"], 30 * 60_000);
    steps.push("pulumi up: finished what the interrupted deploy left undone");
  }
  if (steps.length === 0) steps.push("nothing to finish: every container mounts the volume the config gives it and runs");
  return { kind: "resume", stack: s.stack, primaryData: map.get(PRIMARY), steps };
}

/** The lines the commands print for a Docker stack. */
export function describeDockerRoleChange(r: DockerRoleChangeResult): string[] {
  const end =
    r.kind === "resume"
      ? `stack ${r.stack}: the primary container mounts ${r.primaryData ?? "its own"}'s data.`
      : `${r.kind} done on Docker stack ${r.stack}: the primary container mounts ${r.primaryData}'s data; the pooler, the container names and the outputs are unchanged.`;
  return [...r.steps.map((l) => `- ${l}`), end];
}
