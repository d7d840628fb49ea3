// The Docker program's side of switchover and failover, under the Pulumi SDK's mocks: docker.dataVolumes
// says which role's data volume each server container mounts (the volumes change hands, the containers
// keep their roles), every inconsistent or dangerous mapping is refused before anything is registered,
// the primary refuses a standby's data (its entrypoint guard, run here for real with /bin/sh), and the
// fixed-name containers are replaced delete-first, and the `docker` output names the containers and URNs.
import { expect } from "chai";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { reviewBase } from "../infra/config";
import { DATA_DIR, standbyDataMessage } from "../infra/platform/docker";
import { StackOutputs } from "../infra/outputs";
import { DockerContainers } from "../infra/platform/types";
import { Config, DEV, PROD, Registration, Run, deploy, deployed, named, of, stackConfigFile, value, withKey } from "./pulumiMocks";

const CONTAINER = "docker:index/container:Container";
const VOLUME = "docker:index/volume:Volume";
const TWO = withKey(DEV, "replicas", 2);
/** As nbdb switchover writes it: every role, identity entries included. */
const SWITCHED_TO_REPLICA_1 = { primary: "replica-1", "replica-0": "replica-0", "replica-1": "primary" };
/** A switchover to replica-0, then one to replica-1: each exchanges the primary's volume with the target's. */
const TWO_SWITCHOVERS = { primary: "replica-1", "replica-0": "primary", "replica-1": "replica-0" };

const dataMount = (r: Registration): string => r.inputs.volumes.find((v: any) => v.containerPath === DATA_DIR).volumeName;
/** The roles whose volumes the primary, replica-0, replica-1 and backup containers mount, in that order. */
const mounts = (run: Run): string[] => ["nbdb-primary", "nbdb-replica-0", "nbdb-replica-1", "nbdb-backup"].map((c) => /^nbdb-(.*)-data$/.exec(dataMount(named(run, CONTAINER, c)))![1]);

/** Every Docker registration's inputs, with what a mapping may change (the data mounts and their dependencies, the primary's guard) left out. */
function allButMounts(run: Run): Record<string, unknown> {
  return Object.fromEntries(
    run.registrations
      .filter((r) => r.type.startsWith("docker:"))
      .map((r) => {
        const { volumes, entrypoints, ...rest } = r.inputs;
        const otherVolumes = (volumes ?? []).filter((v: any) => v.containerPath !== DATA_DIR);
        return [`${r.type} ${r.name}`, { ...rest, otherVolumes, entrypoints: r.name === "nbdb-primary" ? undefined : entrypoints, dependencies: r.dependencies.filter((d) => !d.includes(VOLUME)), protect: r.protect }];
      }),
  );
}

describe("Docker data volumes change hands by config (docker.dataVolumes)", function () {
  this.timeout(30_000);
  after(() => pulumi.runtime.setAllConfig({}));

  describe("the mapping", () => {
    let plain: Run & { outputs: StackOutputs };
    before(async () => {
      plain = await deployed("dev", TWO);
    });

    it("without the key mounts every role's own volume; the primary has its guard all the same (an undone change may leave the key or not: the inputs are the same)", () => {
      expect(mounts(plain)).to.deep.equal(["primary", "replica-0", "replica-1", "primary"]);
      expect(named(plain, CONTAINER, "nbdb-primary").inputs.entrypoints.slice(0, 2)).to.deep.equal(["/bin/sh", "-c"]);
    });

    it("gives no container an input read from another container's outputs: one made again by a switchover changes none of the others", () => {
      const containers = of(plain, CONTAINER).filter((r) => r.name !== "nbdb-restore");
      const urns = new Set(containers.map((r) => r.urn));
      for (const c of containers) {
        const fromContainers = Object.entries(c.propertyDependencies).filter(([, deps]) => deps.some((d) => urns.has(d)));
        expect(fromContainers.map(([k]) => k), c.name).to.deep.equal([]);
      }
    });

    it("after a switchover to replica-1: the primary on replica-1's volume, replica-1 on the primary's, the backup reading the primary's; nothing else changes", async () => {
      const run = await deployed("dev", withKey(TWO, "docker.dataVolumes", SWITCHED_TO_REPLICA_1));
      expect(mounts(run)).to.deep.equal(["replica-1", "replica-0", "primary", "replica-1"]);
      expect(named(run, CONTAINER, "nbdb-backup").inputs.volumes.find((v: any) => v.containerPath === DATA_DIR).readOnly).to.equal(true);
      // The volumes stay one per role under their names; the containers keep names, certificates, ports and settings.
      expect(of(run, VOLUME).map((r) => r.inputs.name)).to.have.members(["nbdb-primary-data", "nbdb-replica-0-data", "nbdb-replica-1-data", "nbdb-backup-repo"]);
      expect(allButMounts(run)).to.deep.equal(allButMounts(plain));
      expect(await value(run.outputs.primary)).to.deep.equal(await value(plain.outputs.primary));
      expect(await value(run.outputs.replicas)).to.deep.equal(await value(plain.outputs.replicas));
    });

    it("after two switchovers (a 3-cycle): each container on the volume the last one handed it", async () => {
      const run = await deployed("dev", withKey(TWO, "docker.dataVolumes", TWO_SWITCHOVERS));
      expect(mounts(run)).to.deep.equal(["replica-1", "primary", "replica-0", "replica-1"]);
    });

    it("with identity entries only (switched back), mounts as without the key; entries of roles the stack no longer has are ignored", async () => {
      const back = await deployed("dev", withKey(withKey(TWO, "replicas", 1), "docker.dataVolumes", { primary: "primary", "replica-0": "replica-0", "replica-1": "replica-1", "replica-4": "replica-4" }));
      expect(dataMount(named(back, CONTAINER, "nbdb-primary"))).to.equal("nbdb-primary-data");
      expect(dataMount(named(back, CONTAINER, "nbdb-replica-0"))).to.equal("nbdb-replica-0-data");
      expect(dataMount(named(back, CONTAINER, "nbdb-backup"))).to.equal("nbdb-primary-data");
      // The key stays (nbdb always writes every role), and with it the primary's guard: switching back replaces nothing more.
      expect(named(back, CONTAINER, "nbdb-primary").inputs.entrypoints.slice(0, 2)).to.deep.equal(["/bin/sh", "-c"]);
    });

    it("is never inherited by a review stack from dev: a mapping is a fact of one stack's volumes", () => {
      const dev = { platform: "docker", replicas: 2, docker: { primaryPort: 15432, nodeCpus: 4, dataVolumes: SWITCHED_TO_REPLICA_1, restoreFrom: { stack: "x", time: "latest" } } };
      expect(reviewBase(dev)).to.deep.equal({ platform: "docker", replicas: 2, docker: { nodeCpus: 4 } });
    });

    it("nor is dev's data key: a review stack's is its own", () => {
      expect(reviewBase({ platform: "docker", dataKey: "dev-data-key-0123456789abcdef0123456789" })).to.deep.equal({ platform: "docker" });
    });
  });

  describe("refusals: each names the key and what to do, and nothing is registered", () => {
    const cases: [string, Config, string[]][] = [
      ["a key that is no server role", withKey(TWO, "docker.dataVolumes", { ...SWITCHED_TO_REPLICA_1, standby: "primary" }), ['neuralblitz-db:docker.dataVolumes.standby = "primary": not a server role: the keys are primary or replica-<i> with i from 0 to 4']],
      ["a replica past MAX_REPLICAS", withKey(TWO, "docker.dataVolumes", { "replica-5": "replica-5" }), ["neuralblitz-db:docker.dataVolumes.replica-5 = \"replica-5\": not a server role"]],
      ["a value that is no server role", withKey(TWO, "docker.dataVolumes", { primary: "replica-9", "replica-9": "primary" }), ['neuralblitz-db:docker.dataVolumes.primary = "replica-9": expected the role whose data volume the primary container mounts']],
      ["a value that is no text", withKey(TWO, "docker.dataVolumes", { primary: 1 }), ["neuralblitz-db:docker.dataVolumes.primary = 1: expected the role"]],
      ["a mapping that is no object", withKey(TWO, "docker.dataVolumes", "replica-1"), ['neuralblitz-db:docker.dataVolumes = "replica-1": expected an object from each server role']],
      [
        "one volume mounted by two containers",
        withKey(TWO, "docker.dataVolumes", { primary: "replica-1", "replica-0": "replica-1", "replica-1": "primary" }),
        ["neuralblitz-db:docker.dataVolumes.replica-0 = \"replica-1\": replica-1's data volume would be mounted by 2 containers: primary, replica-0 (fix: write every role's entry in one command", "neuralblitz-db:docker.dataVolumes.replica-0 = \"replica-1\""],
      ],
      [
        "a volume handed over without one in return",
        withKey(TWO, "docker.dataVolumes", { primary: "replica-1" }),
        [
          "neuralblitz-db:docker.dataVolumes.primary = \"replica-1\": replica-1's data volume would be mounted by 2 containers: primary, replica-1 (docker.dataVolumes.replica-1 is unset or replica-1)",
          "neuralblitz-db:docker.dataVolumes.primary = \"replica-1\": primary's own data volume would be mounted by no container",
        ],
      ],
      [
        "removing the replica whose volume the primary runs on",
        withKey(withKey(TWO, "docker.dataVolumes", SWITCHED_TO_REPLICA_1), "replicas", 1),
        [
          "neuralblitz-db:docker.dataVolumes.replica-1 = \"primary\": replicas: 1 removes replica-1, whose container mounts primary's data and whose data the primary container mounts; its volume would be deleted with it " +
            "(fix: switch the primary back first (npx nbdb switchover --pulumi-stack dev --to replica-1), or keep replica-1: pulumi config set replicas 2)",
        ],
      ],
      [
        "removing replicas of a 3-cycle",
        withKey(withKey(TWO, "docker.dataVolumes", TWO_SWITCHOVERS), "replicas", 0),
        [
          "replicas: 0 removes replica-0, whose container mounts primary's data and whose data the replica-1 container mounts; its volume would be deleted with it (fix: switch the primary back first (npx nbdb switchover --pulumi-stack dev --to replica-1, then npx nbdb switchover --pulumi-stack dev --to replica-0)",
          "replicas: 0 removes replica-1, whose container mounts replica-0's data and whose data the primary container mounts",
        ],
      ],
    ];
    for (const [what, config, messages] of cases) {
      it(`refuses ${what}`, async () => {
        const run = await deploy("dev", config);
        expect(run.error, "expected the program to fail").to.be.instanceOf(Error);
        for (const m of messages) expect(run.error!.message).to.include(m);
        expect(run.registrations).to.deep.equal([]);
      });
    }

    it("does not add removal errors to an invalid replicas value", async () => {
      const run = await deploy("dev", withKey(withKey(TWO, "docker.dataVolumes", SWITCHED_TO_REPLICA_1), "replicas", 9));
      expect(run.error!.message).to.include("(1 problem)").and.include("neuralblitz-db:replicas = 9");
    });
  });

  describe("the primary never starts on a standby's data", () => {
    let dir: string;
    let entrypoint: string[];
    let command: string[];
    before(async () => {
      const run = await deployed("dev", withKey(TWO, "docker.dataVolumes", SWITCHED_TO_REPLICA_1));
      ({ entrypoints: entrypoint, command } = named(run, CONTAINER, "nbdb-primary").inputs);
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-standby-guard-"));
      fs.mkdirSync(path.join(dir, "bin"));
      fs.mkdirSync(path.join(dir, "data"));
      // The image's entrypoint, stubbed: it says it ran, with its arguments.
      fs.writeFileSync(path.join(dir, "bin", "docker-entrypoint.sh"), '#!/bin/sh\necho "image entrypoint: $*"\n', { mode: 0o755 });
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** The primary container's entrypoint and command as Docker runs them (as root; here as this user). */
    const start = () =>
      spawnSync(entrypoint[0], [...entrypoint.slice(1), ...command], { env: { ...process.env, PGDATA: path.join(dir, "data"), PATH: `${path.join(dir, "bin")}:${process.env.PATH}` }, encoding: "utf8" });

    it("runs the image's entrypoint with the server's command on a primary's data", () => {
      expect(entrypoint.slice(0, 2)).to.deep.equal(["/bin/sh", "-c"]);
      const r = start();
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.equal(`image entrypoint: ${command.join(" ")}\n`);
    });

    it("exits 1 with the message, running nothing, where the volume holds standby.signal", () => {
      fs.writeFileSync(path.join(dir, "data", "standby.signal"), "");
      try {
        const r = start();
        expect(r.status).to.equal(1);
        expect(r.stdout).to.equal("");
        expect(r.stderr).to.equal(`${standbyDataMessage("dev", "nbdb-primary")}\n`);
        expect(r.stderr).to.include("docker.dataVolumes was changed by hand or a switchover is unfinished").and.include("npx nbdb switchover --pulumi-stack dev --resume finishes or undoes it. Nothing was changed.");
      } finally {
        fs.rmSync(path.join(dir, "data", "standby.signal"));
      }
    });
  });

  describe("replacement", () => {
    it("replaces every fixed-name container by deleting the old one first", async () => {
      const run = await deployed("review-7", { replicas: 2, docker: { dataVolumes: SWITCHED_TO_REPLICA_1 } });
      for (const name of ["nbdb-primary", "nbdb-replica-0", "nbdb-replica-1", "nbdb-pooler", "nbdb-backup", "nbdb-postgres-exporter", "nbdb-pgbouncer-exporter"]) {
        expect(named(run, CONTAINER, name).deleteBeforeReplace, name).to.equal(true);
      }
    });
  });

  describe("the docker stack output", () => {
    let run: Run & { outputs: StackOutputs };
    before(async () => {
      run = await deployed("review-7", { replicas: 2, docker: { dataVolumes: SWITCHED_TO_REPLICA_1 } });
    });

    it("names each container and its URN, each role's own volume and the data directory, so nbdb can inspect exactly those", async () => {
      const c = (name: string) => {
        const r = named(run, CONTAINER, name);
        return { container: r.inputs.name, urn: r.urn };
      };
      const out: DockerContainers = await value(run.outputs.docker!);
      expect(out).to.deep.equal({
        primary: c("nbdb-primary"),
        replicas: [c("nbdb-replica-0"), c("nbdb-replica-1")],
        pooler: c("nbdb-pooler"),
        backup: c("nbdb-backup"),
        // Each role's own volume, whichever container mounts it now.
        volumes: { primary: "nbdb-primary-data-review-7", "replica-0": "nbdb-replica-0-data-review-7", "replica-1": "nbdb-replica-1-data-review-7" },
        dataDir: "/var/lib/postgresql/data",
      });
      expect(out.primary.container).to.equal("nbdb-primary-review-7");
      expect(out.primary.urn).to.match(/::nbdb-primary$/).and.include("docker:index/container:Container");
      expect(await pulumi.isSecret(run.outputs.docker!)).to.equal(false);
    });

    it("is null on AWS and local stacks", async () => {
      expect((await deployed("prod", PROD)).outputs.docker).to.equal(null);
      expect((await deployed("local", stackConfigFile("local"))).outputs.docker).to.equal(null);
    });
  });
});
