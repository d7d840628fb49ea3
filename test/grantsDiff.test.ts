// `nbdb grants diff`: the model at a git revision against the working tree's, as a markdown table
// for a pull-request comment, with the exit codes CI relies on.
import { expect } from "chai";
import { execFile, execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import { changesMarkdown, grantsDiff, modelAt, privilegeChanges } from "../scripts/ops/grantsDiff";
import { DEFAULT_PRIVILEGES, GRANTS } from "../schema/privileges";
import { rejection } from "./helpers";

const REPO = path.join(__dirname, "..");

/** A git repository whose only commit holds this checkout's schema/, edited by `edit`. */
function repoWithModel(edit: (privileges: string) => string = (s) => s): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-grants-repo-"));
  fs.cpSync(path.join(REPO, "schema"), path.join(dir, "schema"), { recursive: true });
  const file = path.join(dir, "schema", "privileges.ts");
  fs.writeFileSync(file, edit(fs.readFileSync(file, "utf8")));
  const git = (...args: string[]) => execFileSync("git", ["-C", dir, "-c", "user.name=test", "-c", "user.email=test@example.com", ...args], { stdio: "pipe" });
  git("init", "-q");
  git("add", ".");
  git("commit", "-q", "-m", "model");
  return dir;
}

async function nbdb(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(REPO, "bin", "nbdb.js"), ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("nbdb grants diff", function () {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const repo = (edit?: (s: string) => string) => {
    const dir = repoWithModel(edit);
    dirs.push(dir);
    return dir;
  };

  it("reports no change, in one sentence, when the base holds the same model", () => {
    const diff = grantsDiff("HEAD", repo());
    expect(diff.changes).to.deep.equal([]);
    expect(diff.markdown).to.equal("No privilege changes against `HEAD`: schema/privileges.ts grants what it granted there.");
  });

  it("lists what the working tree grants and revokes per role and object", () => {
    const base = repo((s) =>
      s
        .replace("api_keys: [S, I, U, D],", "api_keys: [S, I, U],")
        .replace("users: [S, I, U],", "users: [S, I, U, D],")
        .replace('{ role: "nb_auditor", objectType: "table", object: "golden_dag_head", privileges: [S] },', "")
        .replace('privileges: [S] }];', 'privileges: [S, "REFERENCES"] }];'),
    );
    const diff = grantsDiff("HEAD", base);
    expect(diff.changes).to.deep.equal([
      { role: "nb_app", object: "TABLE neuralblitz.api_keys", granted: ["DELETE"], revoked: [] },
      { role: "nb_app", object: "TABLE neuralblitz.users", granted: [], revoked: ["DELETE"] },
      { role: "nb_auditor", object: "TABLE neuralblitz.golden_dag_head", granted: ["SELECT"], revoked: [] },
      { role: "nb_readonly", object: "future TABLES of nb_owner in SCHEMA neuralblitz", granted: [], revoked: ["REFERENCES"] },
    ]);
    expect(diff.markdown.split("\n")).to.deep.equal([
      "### Privilege changes against `HEAD`",
      "",
      "| role | object | granted | revoked |",
      "| --- | --- | --- | --- |",
      "| nb_app | `TABLE neuralblitz.api_keys` | DELETE |  |",
      "| nb_app | `TABLE neuralblitz.users` |  | DELETE |",
      "| nb_auditor | `TABLE neuralblitz.golden_dag_head` | SELECT |  |",
      "| nb_readonly | `future TABLES of nb_owner in SCHEMA neuralblitz` |  | REFERENCES |",
    ]);
  });

  it("shows a function with its signature", () => {
    const withExtraGrant = { grants: [...GRANTS, { role: "nb_app" as const, objectType: "function" as const, object: "verify_golden_dag()", privileges: ["EXECUTE" as const] }], defaultPrivileges: DEFAULT_PRIVILEGES };
    const changes = privilegeChanges({ grants: GRANTS, defaultPrivileges: DEFAULT_PRIVILEGES }, withExtraGrant);
    expect(changes).to.deep.equal([{ role: "nb_app", object: "FUNCTION neuralblitz.verify_golden_dag()", granted: ["EXECUTE"], revoked: [] }]);
    expect(changesMarkdown("origin/main", changes)).to.include("| nb_app | `FUNCTION neuralblitz.verify_golden_dag()` | EXECUTE |  |");
  });

  it("refuses an unknown revision and a revision without the model, saying what to do, and cleans up after itself", async () => {
    const dir = repo();
    const before = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("nbdb-grants-base-"));
    expect(await rejection(Promise.resolve().then(() => modelAt("no-such-branch", dir)))).to.include("unknown git revision 'no-such-branch'").and.include("git fetch");
    fs.rmSync(path.join(dir, "schema"), { recursive: true });
    execFileSync("git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "no model"]);
    expect(await rejection(Promise.resolve().then(() => modelAt("HEAD", dir)))).to.include("HEAD has no schema/privileges.ts");
    expect(modelAt("HEAD~1", dir).grants).to.deep.equal(JSON.parse(JSON.stringify(GRANTS)));
    expect(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("nbdb-grants-base-"))).to.deep.equal(before);
  });

  it("exits with 0 or 1 by whether privileges changed, and 2 on an error, as its --help says", async () => {
    const help = await nbdb("grants", "diff", "--help");
    expect(help.stdout.replace(/\s+/g, " ")).to.include("Exit code 0 when nothing changed, 1 when privileges changed, 2 on error");
    const head = await nbdb("grants", "diff", "--base", "HEAD");
    expect(head.code).to.equal(grantsDiff("HEAD").changes.length > 0 ? 1 : 0);
    expect(head.stdout.trim()).to.equal(grantsDiff("HEAD").markdown);
    const unknown = await nbdb("grants", "diff", "--base", "no-such-branch");
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.include("unknown git revision");
    expect((await nbdb("grants", "diff")).code).to.equal(2);
  });
});
