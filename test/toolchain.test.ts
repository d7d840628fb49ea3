// The engine toolchain's pure parts: versions come from package-lock.json, and a released module's
// replace directives are restated, dropped or reported as the wrapper module needs.
import { expect } from "chai";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { components, lockedVersions, restatableReplaces, wrapperGoMod } from "../scripts/toolchain/pulumi";

describe("Pulumi engine toolchain", () => {
  it("pins every component to the exact versions package-lock.json holds", () => {
    const lock = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package-lock.json"), "utf8")).packages;
    const v = lockedVersions();
    expect(v).to.deep.equal({
      pulumi: lock["node_modules/@pulumi/pulumi"].version,
      postgresql: lock["node_modules/@pulumi/postgresql"].version,
      random: lock["node_modules/@pulumi/random"].version,
    });
    const byBinary = Object.fromEntries(components(v).map((c) => [c.binary, c]));
    expect(byBinary.pulumi).to.include({ module: "github.com/pulumi/pulumi/pkg/v3", version: `v${v.pulumi}`, engine: true });
    expect(byBinary.pulumi.ldflags).to.include(`=v${v.pulumi}`);
    expect(byBinary["pulumi-resource-postgresql"]).to.include({ version: `v${v.postgresql}`, engine: false });
    expect(byBinary["pulumi-resource-random"]).to.include({ version: `v${v.random}` });
  });

  it("refuses a lock file that pins no exact version, naming the package", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-lock-"));
    const file = path.join(dir, "package-lock.json");
    fs.writeFileSync(file, JSON.stringify({ packages: { "node_modules/@pulumi/pulumi": { version: "^3.0.0" } } }));
    expect(() => lockedVersions(file)).to.throw(/pins no exact version of @pulumi\/pulumi \(found \^3\.0\.0\)/);
  });

  it("restates module replacements, drops a same-repository directory required at a release, reports other local ones", () => {
    const goMod = [
      "module github.com/pulumi/pulumi/pkg/v3",
      "replace github.com/pulumi/pulumi/sdk/v3 => ../sdk",
      "replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e // fork",
      "replace (",
      "\tgithub.com/terraform-providers/terraform-provider-postgresql => ../upstream",
      ")",
      "require (",
      "\tgithub.com/pulumi/pulumi/sdk/v3 v3.248.0",
      "\tgithub.com/terraform-providers/terraform-provider-postgresql v0.0.0",
      ")",
    ].join("\n");
    expect(restatableReplaces(goMod)).to.deep.equal({
      restate: ["github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"],
      dropped: ["github.com/pulumi/pulumi/sdk/v3 => ../sdk"],
      local: ["github.com/terraform-providers/terraform-provider-postgresql => ../upstream"],
    });
  });

  it("writes a wrapper module that requires the release and restates its replacements", () => {
    const [cli] = components({ pulumi: "3.248.0", postgresql: "3.18.1", random: "4.21.2" });
    const goMod = wrapperGoMod(cli, ["a => b v1.0.0"], "1.26");
    expect(goMod).to.include("\ngo 1.26\n").and.include("require github.com/pulumi/pulumi/pkg/v3 v3.248.0\n").and.include("replace a => b v1.0.0\n");
  });
});
