// `nbdb grants diff --base <git-ref>`: the privilege model (schema/privileges.ts) at a base revision
// against the working tree's, as a markdown table for a pull-request comment: per role and object,
// the privileges granted and revoked.
//
// The base model is read from git itself: `git archive` of the base's schema/ directory (the model
// and the modules it imports) into a temporary directory, loaded from there with ts-node and removed
// afterwards. No checkout, worktree or index is touched, so it runs in any clone with the base fetched.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { DEFAULT_PRIVILEGES, DefaultPrivilegeSpec, GRANTS, GrantSpec, OBJECT_OWNER, objectSql } from "../../schema/privileges";
import { SCHEMA } from "../../schema/roles";
import { UserError } from "../errors";

export interface PrivilegeModel {
  readonly grants: readonly GrantSpec[];
  readonly defaultPrivileges: readonly DefaultPrivilegeSpec[];
}

export interface PrivilegeChange {
  readonly role: string;
  /** As SQL names it, e.g. `TABLE neuralblitz.users`. */
  readonly object: string;
  readonly granted: readonly string[];
  readonly revoked: readonly string[];
}

export interface GrantsDiff {
  readonly base: string;
  readonly changes: readonly PrivilegeChange[];
  readonly markdown: string;
}

const MODEL_DIR = "schema";
const MODEL_FILE = `${MODEL_DIR}/privileges.ts`;
const REPO_DIR = path.resolve(__dirname, "..", "..");

/** Every privilege of the model, keyed by role and object. */
function privilegesByRoleAndObject(model: PrivilegeModel): Map<string, Set<string>> {
  const held = new Map<string, Set<string>>();
  const add = (role: string, object: string, privileges: readonly string[]) => {
    const key = `${role}\t${object}`;
    held.set(key, new Set([...(held.get(key) ?? []), ...privileges]));
  };
  for (const g of model.grants) add(g.role, objectSql(g.objectType, g.object), g.privileges);
  for (const d of model.defaultPrivileges) add(d.role, `future ${d.objectType.toUpperCase()}S of ${OBJECT_OWNER} in SCHEMA ${SCHEMA}`, d.privileges);
  return held;
}

export function privilegeChanges(base: PrivilegeModel, head: PrivilegeModel): PrivilegeChange[] {
  const before = privilegesByRoleAndObject(base);
  const after = privilegesByRoleAndObject(head);
  const changes: PrivilegeChange[] = [];
  for (const key of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    const was = before.get(key) ?? new Set<string>();
    const is = after.get(key) ?? new Set<string>();
    const granted = [...is].filter((p) => !was.has(p)).sort();
    const revoked = [...was].filter((p) => !is.has(p)).sort();
    const [role, object] = key.split("\t");
    if (granted.length > 0 || revoked.length > 0) changes.push({ role, object, granted, revoked });
  }
  return changes;
}

export function changesMarkdown(base: string, changes: readonly PrivilegeChange[]): string {
  if (changes.length === 0) return `No privilege changes against \`${base}\`: schema/privileges.ts grants what it granted there.`;
  const rows = changes.map((c) => `| ${c.role} | \`${c.object}\` | ${c.granted.join(", ")} | ${c.revoked.join(", ")} |`);
  return [`### Privilege changes against \`${base}\``, "", "| role | object | granted | revoked |", "| --- | --- | --- | --- |", ...rows].join("\n");
}

function git(repoDir: string, args: string[]): Buffer {
  return execFileSync("git", ["-C", repoDir, ...args], { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 256 * 1024 * 1024 });
}

function resolveCommit(repoDir: string, ref: string): string {
  try {
    return git(repoDir, ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]).toString().trim();
  } catch {
    throw new UserError(`unknown git revision '${ref}' in ${repoDir}: fetch it first (e.g. git fetch origin main) or name an existing branch, tag or commit.`);
  }
}

function requireTypeScript(file: string): unknown {
  if (!require.extensions[".ts"]) require("ts-node").register({ transpileOnly: true, project: path.join(REPO_DIR, "tsconfig.json") });
  return require(file);
}

/** The privilege model as it is at `ref`. */
export function modelAt(ref: string, repoDir: string = REPO_DIR): PrivilegeModel {
  const commit = resolveCommit(repoDir, ref);
  try {
    git(repoDir, ["cat-file", "-e", `${commit}:${MODEL_FILE}`]);
  } catch {
    throw new UserError(`${ref} has no ${MODEL_FILE} (the privilege model): compare against a revision that has one, e.g. the pull request's base branch.`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-grants-base-"));
  try {
    execFileSync("tar", ["-x", "-C", dir], { input: git(repoDir, ["archive", "--format=tar", commit, MODEL_DIR]) });
    const file = path.join(dir, MODEL_FILE);
    let model: { GRANTS?: GrantSpec[]; DEFAULT_PRIVILEGES?: DefaultPrivilegeSpec[] };
    try {
      model = requireTypeScript(file) as typeof model;
    } catch (e) {
      throw new UserError(`cannot load ${MODEL_FILE} of ${ref}: ${(e as Error).message.split("\n")[0]}. It must import only modules in ${MODEL_DIR}/.`);
    } finally {
      for (const cached of Object.keys(require.cache).filter((k) => k.startsWith(dir))) delete require.cache[cached];
    }
    if (!Array.isArray(model.GRANTS)) throw new UserError(`${MODEL_FILE} of ${ref} exports no GRANTS list: compare against a revision with the privilege model.`);
    return { grants: model.GRANTS, defaultPrivileges: model.DEFAULT_PRIVILEGES ?? [] };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The working tree's model against the one at `base`. */
export function grantsDiff(base: string, repoDir: string = REPO_DIR): GrantsDiff {
  const changes = privilegeChanges(modelAt(base, repoDir), { grants: GRANTS, defaultPrivileges: DEFAULT_PRIVILEGES });
  return { base, changes, markdown: changesMarkdown(base, changes) };
}
