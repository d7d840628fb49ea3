// The Pulumi program compiles with the production dependencies alone (`npm ci --omit=dev && pulumi
// up`): its tsconfig names no test-only types and everything it imports is a dependency, not a
// devDependency. (.ci/run also type-checks it for real in a copy installed with --omit=dev.)
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";

const ROOT = path.join(__dirname, "..");
const PROGRAM_DIRS = ["infra", "schema", "client"];
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));
}

/** "pg" of `from "pg"`, "@pulumi/aws" of `from "@pulumi/aws/rds"`; node's own modules left out. */
function importedPackages(text: string): string[] {
  const specs = [...text.matchAll(/(?:from\s+|require\(|import\()"([^".][^"]*)"/g)].map((m) => m[1]);
  const builtins = new Set(require("module").builtinModules as string[]);
  return specs.map((s) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0])).filter((s) => !builtins.has(s) && !s.startsWith("node:"));
}

/** As TypeScript finds them: `types`/`typings`, or a .d.ts beside `main` (index.js by default). */
function shipsOwnTypes(name: string): boolean {
  // The installed manifest itself (not require.resolve: a package's `exports` may not list package.json).
  const manifestFile = path.join(ROOT, "node_modules", name, "package.json");
  const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"));
  const main = String(manifest.main ?? "index.js").replace(/\.js$/, "");
  return Boolean(manifest.types || manifest.typings) || fs.existsSync(path.join(path.dirname(manifestFile), `${main}.d.ts`));
}

describe("the Pulumi program's dependencies", function () {
  it("is compiled with its own tsconfig, which names no test-only types", function () {
    const project = yaml.load(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as { runtime: { options: { tsconfig: string } } };
    expect(project.runtime.options.tsconfig).to.equal("tsconfig.program.json");
    const tsconfig = JSON.parse(fs.readFileSync(path.join(ROOT, "tsconfig.program.json"), "utf8"));
    for (const t of tsconfig.compilerOptions.types as string[]) expect(pkg.dependencies, `@types/${t}`).to.have.property(`@types/${t}`);
    expect(tsconfig.include.map((g: string) => g.split("/")[0])).to.have.members(PROGRAM_DIRS);
  });

  it("imports only production dependencies, with their types", function () {
    const missing: string[] = [];
    for (const file of PROGRAM_DIRS.flatMap((d) => files(path.join(ROOT, d)))) {
      for (const name of importedPackages(fs.readFileSync(file, "utf8"))) {
        const typesFrom = shipsOwnTypes(name) ? name : `@types/${name}`;
        for (const needed of new Set([name, typesFrom])) {
          if (!(needed in pkg.dependencies)) missing.push(`${path.relative(ROOT, file)} needs ${needed} (in ${needed in pkg.devDependencies ? "devDependencies" : "no dependency list"})`);
        }
      }
    }
    expect(missing).to.deep.equal([]);
  });
});
