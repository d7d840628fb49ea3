// The project's resources under the real Pulumi engine (not the SDK's mocks): the SqlBundle
// dynamic provider applying sql/ to a real local primary through `pulumi up`, preview and refresh
// that settle, a new bundle as exactly one create, an edited migration refused at preview, and a
// database replaced under the stack bundled again. And the real program (infra/) stopping on bad
// config before any resource is registered.
//
// What does not run here: the program's @pulumi/postgresql resources (Roles, Grants, Schema,
// DefaultPrivileges), whose provider binary the Go module proxy does not serve (docs/engine.md).
import { expect } from "chai";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { REPO_BUNDLE_DIR, loadCatalog } from "../infra/bundles/catalog";
import { sqlBundles } from "../infra/dynamic/sqlBundle";
import { createStack } from "../infra/stack";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { ledgerRows } from "./bundleHelpers";
import { EngineWorkspace, engineStack, requireEngine, stateResources } from "./engineHarness";
import { query, rejection, uniqueStack } from "./helpers";

const BUNDLE_TYPE = "pulumi-nodejs:dynamic/neuralblitz:SqlBundle";

/** A copy of sql/ that a test may change. */
function bundleCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-engine-sql-"));
  fs.cpSync(REPO_BUNDLE_DIR, dir, { recursive: true });
  return dir;
}

describe("the real Pulumi engine", function () {
  let binDir: string;
  before(function () {
    binDir = requireEngine(this);
  });

  describe("SqlBundles on a local primary", () => {
    let outputs: LocalStackOutputs;
    let ws: EngineWorkspace;
    const bundleDir = bundleCopy();

    before(async () => {
      // Roles, the database and its schema, as the platforms create them before the bundles.
      ({ outputs } = await up({ stack: uniqueStack("engine"), replicas: 0, bundles: false }));
      const migrator = outputs.connections.migrator;
      ws = await engineStack(binDir, {
        project: "nbdb-engine",
        stack: "bundles",
        program: async () => {
          sqlBundles("schema", { bundles: loadCatalog(bundleDir), connection: migrator, protectedStack: false });
        },
      });
    });
    after(async () => ws?.remove());

    it("a new stack's up applies every bundle of sql/, in order, one SqlBundle each", async () => {
      const res = await ws.stack.up();
      expect(res.summary.result).to.equal("succeeded");
      const catalog = loadCatalog(bundleDir);
      expect(res.summary.resourceChanges).to.deep.equal({ create: catalog.length + 1 });
      const ledger = await ledgerRows(outputs.connections.migrator);
      expect(ledger.map((r) => [r.name, r.checksum]).sort()).to.deep.equal(catalog.map((b) => [b.name, b.checksum]).sort());
      const bundles = (await stateResources(ws)).filter((r) => r.type === BUNDLE_TYPE);
      expect(bundles).to.have.length(catalog.length);
      const password = new URL(outputs.connections.migrator).password;
      for (const b of bundles) expect(JSON.stringify(b)).not.to.include(password);
    });

    it("right after it, preview and refresh both settle (--expect-no-changes)", async () => {
      await ws.stack.preview({ expectNoChanges: true });
      const refreshed = await ws.stack.refresh({ expectNoChanges: true });
      expect(refreshed.summary.result).to.equal("succeeded");
    });

    it("a new repeatable bundle is exactly one create", async () => {
      fs.writeFileSync(path.join(bundleDir, "repeatable", "R990__engine_probe.sql"), "CREATE OR REPLACE VIEW neuralblitz.engine_probe AS SELECT 1 AS one;\n");
      const preview = await ws.stack.preview();
      expect(preview.changeSummary).to.deep.include({ create: 1 });
      expect(Object.keys(preview.changeSummary).sort()).to.deep.equal(["create", "same"]);
      await ws.stack.up();
      expect(await query(outputs.connections.migrator, "SELECT one FROM neuralblitz.engine_probe")).to.deep.equal([{ one: 1 }]);
    });

    it("an edited, applied migration fails preview and up with both checksums, and changes nothing", async () => {
      const file = path.join(bundleDir, "migrations", "V010__users_and_credentials.sql");
      const original = fs.readFileSync(file, "utf8");
      const applied = loadCatalog(bundleDir).find((b) => b.name === "V010__users_and_credentials")!.checksum;
      fs.writeFileSync(file, `${original}\n-- edited after it was applied\n`);
      try {
        const edited = loadCatalog(bundleDir).find((b) => b.name === "V010__users_and_credentials")!.checksum;
        const before = await ledgerRows(outputs.connections.migrator);
        for (const attempt of [() => ws.stack.preview(), () => ws.stack.up()]) {
          expect(await rejection(attempt())).to.include(`applied checksum ${applied}, file checksum ${edited}`);
        }
        expect(await ledgerRows(outputs.connections.migrator)).to.deep.equal(before);
      } finally {
        fs.writeFileSync(file, original);
      }
    });

    it("a database replaced under the stack is noticed, and the next up bundles it again", async () => {
      // Out of band: the database dropped and made again, empty, as a platform would hand it over.
      const admin = outputs.connections.admin;
      const postgres = new URL(admin);
      postgres.pathname = "/postgres";
      await query(postgres.toString(), "DROP DATABASE neuralblitz WITH (FORCE)");
      await query(postgres.toString(), "CREATE DATABASE neuralblitz OWNER nb_owner");
      await query(admin, "GRANT CONNECT ON DATABASE neuralblitz TO nb_migrator; CREATE SCHEMA neuralblitz AUTHORIZATION nb_owner");
      const preview = await ws.stack.preview();
      expect(preview.changeSummary.update).to.equal(loadCatalog(bundleDir).length);
      const res = await ws.stack.up();
      expect(res.summary.result).to.equal("succeeded");
      expect((await ledgerRows(outputs.connections.migrator)).map((r) => r.name).sort()).to.deep.equal(loadCatalog(bundleDir).map((b) => b.name).sort());
      await ws.stack.preview({ expectNoChanges: true });
    });

    it("refresh drops the bundles a replaced database no longer holds, and up applies them again", async () => {
      await query(outputs.connections.admin, "DELETE FROM neuralblitz.bundle_ledger WHERE name = 'R990__engine_probe'");
      await ws.stack.refresh();
      const names = (await stateResources(ws)).filter((r) => r.type === BUNDLE_TYPE).map((r) => r.urn);
      expect(names.some((u) => u.endsWith("schema-R990__engine_probe"))).to.equal(false);
      const res = await ws.stack.up();
      expect(res.summary.resourceChanges).to.deep.include({ create: 1 });
      expect((await ledgerRows(outputs.connections.migrator)).map((r) => r.name)).to.include("R990__engine_probe");
    });
  });

  describe("the Pulumi program (infra/)", () => {
    it("stops preview on bad config before any resource is registered, naming each key", async () => {
      const ws = await engineStack(binDir, {
        project: "neuralblitz-db",
        stack: "engine-bad-config",
        program: async () => {
          createStack();
        },
        config: { "neuralblitz-db:platform": "docker", "neuralblitz-db:replicas": "many", "neuralblitz-db:postgresVersion": "9" },
      });
      try {
        const message = await rejection(ws.stack.preview());
        expect(message).to.include("replicas").and.include("postgresVersion");
        expect((await stateResources(ws)).filter((r) => r.type !== "pulumi:pulumi:Stack")).to.deep.equal([]);
      } finally {
        await ws.remove();
      }
    });
  });
});
