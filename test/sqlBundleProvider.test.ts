// The SqlBundle dynamic provider: its create/diff/update/delete against a real PostgreSQL, its
// serialized closure (what the Pulumi engine runs, in a process that does not compile TypeScript),
// and the resource under Pulumi's mocks.
import { expect } from "chai";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import * as pulumi from "@pulumi/pulumi";
import { Bundle, loadCatalog } from "../infra/bundles/catalog";
import { SqlBundle, SqlBundleInputs, SqlBundleOutputs, sqlBundleProvider, sqlBundles } from "../infra/dynamic/sqlBundle";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { fixtureBundleDir, freshDatabase, historyNames, ledgerRows } from "./bundleHelpers";
import { query, rejection, uniqueStack } from "./helpers";

const REPO = path.join(__dirname, "..");

function inputsOf(bundle: Bundle, connection: string): SqlBundleInputs {
  const { name, kind, order, file, sql, checksum, transactional } = bundle;
  return { bundleName: name, kind, order, file, sql, checksum, transactional, connection };
}

function bundleNamed(dir: string, name: string): Bundle {
  return loadCatalog(dir).find((b) => b.name === name)!;
}

describe("SqlBundle dynamic provider", () => {
  const provider = sqlBundleProvider();
  let outputs: LocalStackOutputs;
  let url: string;
  const ledger = loadCatalog()[0];

  before(async () => {
    ({ outputs } = await up({ stack: uniqueStack("provider"), replicas: 0, bundles: false }));
    url = await freshDatabase(outputs, "provider");
  });

  describe("against a real server", () => {
    const answer41 = bundleNamed(fixtureBundleDir("answer-41"), "R900__fixture_answer");
    const answer42 = bundleNamed(fixtureBundleDir("answer-42"), "R900__fixture_answer");

    it("create applies the bundle and records it; the outputs carry no SQL, and which database it is in", async () => {
      const created = await provider.create!(inputsOf(ledger, url));
      expect(created.id).to.equal("V001__bundle_ledger");
      const { database, ...outs } = created.outs as SqlBundleOutputs;
      expect(outs).to.deep.equal({ bundleName: ledger.name, kind: "versioned", file: ledger.file, checksum: ledger.checksum, transactional: true, connection: url });
      expect(database).to.match(/^\d+:\d+$/);
      await provider.create!(inputsOf(answer41, url));
      expect(await query(url, "SELECT answer FROM neuralblitz.fixture_answer")).to.deep.equal([{ answer: 41 }]);
      expect((await ledgerRows(url)).map((r) => [r.name, r.checksum])).to.deep.equal([
        ["R900__fixture_answer", answer41.checksum],
        ["V001__bundle_ledger", ledger.checksum],
      ]);
    });

    it("create adopts a bundle the ledger already holds unchanged, applying nothing", async () => {
      const history = await historyNames(url);
      await provider.create!(inputsOf(ledger, url));
      expect(await historyNames(url)).to.deep.equal(history);
    });

    it("diff shows no change for an unchanged bundle, even with a new connection string, and a change for a new checksum", async () => {
      const olds = (await provider.create!(inputsOf(answer41, url))).outs as SqlBundleOutputs;
      expect((await provider.diff!("R900__fixture_answer", olds, inputsOf(answer41, `${url}?application_name=rotated`))).changes).to.equal(false);
      expect(await provider.diff!("R900__fixture_answer", olds, inputsOf(answer42, url))).to.deep.equal({ changes: true });
    });

    it("update re-applies a changed repeatable bundle", async () => {
      const olds = (await provider.create!(inputsOf(answer41, url))).outs as SqlBundleOutputs;
      const updated = await provider.update!("R900__fixture_answer", olds, inputsOf(answer42, url));
      expect(updated.outs).to.include({ checksum: answer42.checksum });
      expect(await query(url, "SELECT answer FROM neuralblitz.fixture_answer")).to.deep.equal([{ answer: 42 }]);
      expect((await ledgerRows(url)).find((r) => r.name === "R900__fixture_answer")!.checksum).to.equal(answer42.checksum);
    });

    it("diff (so preview) and update refuse a changed versioned migration, with both checksums, and change nothing", async () => {
      const before = await ledgerRows(url);
      const edited = { ...inputsOf(ledger, url), sql: `${ledger.sql}-- edited\n`, checksum: "e".repeat(64) };
      const olds = (await provider.create!(inputsOf(ledger, url))).outs as SqlBundleOutputs;
      for (const refused of [provider.diff!("V001__bundle_ledger", olds, edited), provider.update!("V001__bundle_ledger", olds, edited)]) {
        expect(await rejection(refused)).to.include(`applied checksum ${ledger.checksum}, file checksum ${"e".repeat(64)}`).and.include("new migration");
      }
      expect(await ledgerRows(url)).to.deep.equal(before);
    });

    it("diff and read notice a database replaced under the stack; read shows a checksum the ledger holds instead", async () => {
      const replacedUrl = await freshDatabase(outputs, "provider_replaced");
      const olds = (await provider.create!(inputsOf(ledger, replacedUrl))).outs as SqlBundleOutputs;
      expect((await provider.diff!("V001__bundle_ledger", olds, inputsOf(ledger, replacedUrl))).changes).to.equal(false);
      expect(await provider.read!("V001__bundle_ledger", olds)).to.deep.equal({ id: "V001__bundle_ledger", props: olds });
      // Another checksum in the ledger (applied by hand): refresh shows it.
      await query(replacedUrl, "UPDATE neuralblitz.bundle_ledger SET checksum = $1 WHERE name = 'V001__bundle_ledger'", ["f".repeat(64)]);
      expect((await provider.read!("V001__bundle_ledger", olds)).props).to.include({ checksum: "f".repeat(64) });
      // The database dropped and created again, empty: another identity, nothing in its ledger.
      await query(outputs.connections.admin, "DROP DATABASE provider_replaced");
      await freshDatabase(outputs, "provider_replaced");
      expect((await provider.diff!("V001__bundle_ledger", olds, inputsOf(ledger, replacedUrl))).changes).to.equal(true);
      expect((await provider.read!("V001__bundle_ledger", olds)).id).to.equal("");
      const again = (await provider.update!("V001__bundle_ledger", olds, inputsOf(ledger, replacedUrl))).outs as SqlBundleOutputs;
      expect(again.database).to.not.equal(olds.database);
      expect((await ledgerRows(replacedUrl)).map((r) => r.name)).to.deep.equal(["V001__bundle_ledger"]);
    });

    it("delete drops nothing: objects and ledger rows stay", async () => {
      const before = await ledgerRows(url);
      await provider.delete!("R900__fixture_answer", { bundleName: answer42.name, kind: "repeatable", file: answer42.file, checksum: answer42.checksum, transactional: true });
      expect(await query(url, "SELECT answer FROM neuralblitz.fixture_answer")).to.deep.equal([{ answer: 42 }]);
      expect(await ledgerRows(url)).to.deep.equal(before);
    });
  });

  describe("as a serialized closure", () => {
    let text: string;
    before(async () => {
      text = (await pulumi.runtime.serializeFunction(() => provider)).text;
    });

    it("captures plain strings and its own functions only: no pg client, pool or module", () => {
      expect(text).not.to.match(/require\("pg"\)|\bClient\b|\bPool\b|process\.binding/);
      const captured = [...text.matchAll(/with\(\{ (.*) \}\) \{/g)].flatMap((m) => m[1].split(/, (?=\w+: )/));
      expect(captured.length).to.be.greaterThan(0);
      for (const entry of captured) expect(entry).to.match(/^\w+: (__\w+|"[^"]*"|undefined)$/);
    });

    it("runs where the Pulumi engine runs it: a plain node process that requires it from a string", async () => {
      const answer = bundleNamed(fixtureBundleDir("answer-41"), "R900__fixture_answer");
      const work = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-provider-"));
      fs.writeFileSync(path.join(work, "provider.js"), text);
      fs.writeFileSync(path.join(work, "inputs.json"), JSON.stringify(inputsOf({ ...answer, name: "R901__fixture_answer_again" }, url)));
      // The same loader @pulumi/pulumi's dynamic provider host uses, without ts-node preloaded.
      const script = `
        const fs = require("fs");
        const provider = require("require-from-string")(fs.readFileSync(process.argv[1], "utf8")).handler();
        provider.create(JSON.parse(fs.readFileSync(process.argv[2], "utf8")))
          .then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1); });`;
      const { stdout } = await promisify(execFile)(process.execPath, ["-e", script, path.join(work, "provider.js"), path.join(work, "inputs.json")], { cwd: REPO });
      expect(JSON.parse(stdout).id).to.equal("R901__fixture_answer_again");
      expect((await ledgerRows(url)).map((r) => r.name)).to.include("R901__fixture_answer_again");
    });
  });

  describe("under Pulumi's mocks", () => {
    const registered: pulumi.runtime.MockResourceArgs[] = [];

    before(() => {
      pulumi.runtime.setMocks(
        {
          newResource: (args) => {
            registered.push(args);
            return { id: `${args.name}-id`, state: args.inputs };
          },
          call: (args) => args.inputs,
        },
        "neuralblitz-db",
        "review-1",
      );
    });

    it("registers one SqlBundle per bundle, in catalog order, with its type token and the connection as a secret", async () => {
      const catalog = loadCatalog();
      const resources = sqlBundles("schema", { bundles: catalog, connection: "postgresql://nb_migrator:secret@db:5432/neuralblitz", protectedStack: false });
      expect(resources[0]).to.be.instanceOf(SqlBundle);
      await new Promise<string>((r) => resources[resources.length - 1].checksum.apply(r));
      const ours = registered.filter((r) => r.name.startsWith("schema-"));
      expect(ours.map((r) => r.name)).to.deep.equal(catalog.map((b) => `schema-${b.name}`));
      for (const r of ours) {
        expect(r.type).to.equal("pulumi-nodejs:dynamic/neuralblitz:SqlBundle");
        expect(pulumi.runtime.isRpcSecret(r.inputs.connection)).to.equal(true);
        expect(pulumi.runtime.isRpcSecret(r.inputs.checksum)).to.equal(false);
      }
      expect(ours[0].inputs).to.include({ bundleName: catalog[0].name, checksum: catalog[0].checksum, kind: "versioned" });
    });
  });
});
