// docs/config.md against infra/config.ts, by behaviour: a stack's config is loaded through
// loadConfig() (under the Pulumi SDK's mocks, no engine) and every row of the page is tried: the
// keys the program knows at each level, what an unset key becomes, where a range stops, which key
// is required. A default or range changed in the code (or on the page) without the other fails here.
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { loadConfig } from "../infra/config";
import { Config, installMocks, withKey } from "./pulumiMocks";

const PAGE = fs.readFileSync(path.join(__dirname, "..", "docs", "config.md"), "utf8");
const PROJECT = "neuralblitz-db";

interface Row {
  readonly keys: string[];
  readonly allowed: string;
  readonly fallback: string;
}

/** The rows of the table after `<!-- checked: config -->`. */
function rows(): Row[] {
  const at = PAGE.indexOf("<!-- checked: config -->");
  expect(at, "docs/config.md marks its table").to.be.greaterThan(-1);
  const lines = PAGE.slice(at).split("\n").slice(3);
  const out: Row[] = [];
  for (const line of lines) {
    if (!line.startsWith("|")) break;
    const cells = line
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    out.push({ keys: [...cells[0].matchAll(/`([^`]+)`/g)].map((m) => m[1]), allowed: cells[1], fallback: cells[2].replace(/`/g, "") });
  }
  expect(out.length).to.be.greaterThan(20);
  return out;
}

const AWS = { region: "eu-west-1", instanceClass: "db.r6g.xlarge", allocatedStorageGb: 100, vpcId: "vpc-0a1b2c3d", subnetIds: ["subnet-0a1b2c3d", "subnet-1a1b2c3d"], allowedCidrs: ["10.0.0.0/16"] };

/** The smallest valid config of the platform a key belongs to. */
function baseFor(key: string): Config {
  if (key.startsWith("aws.")) return { platform: "aws", aws: { ...AWS } };
  return { platform: key.startsWith("local.") ? "local" : "docker" };
}

/** The loaded config of a stack with `config`, or the error's message. */
async function load(config: Config): Promise<{ value?: unknown; error?: string }> {
  await installMocks("dev", config);
  try {
    return { value: loadConfig() };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function at(value: unknown, key: string): unknown {
  return key.split(".").reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], value);
}

describe("docs/config.md states what infra/config.ts reads", function () {
  const documented = rows().flatMap((r) => r.keys);
  after(() => pulumi.runtime.setAllConfig({}));

  it("lists every key the program knows, at every level, and only those", async function () {
    const prefixes = new Set(["", ...documented.flatMap((k) => k.split(".").slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join(".")))]);
    for (const prefix of prefixes) {
      const probe = prefix ? `${prefix}.notAKey` : "notAKey";
      const { error } = await load(withKey(baseFor(probe), probe, 1));
      const known = new RegExp(`${PROJECT}:${probe.replace(/\./g, "\\.")} = 1: unknown key; known keys: ([^(]*) \\(fix`).exec(error ?? "");
      expect(known, `the program's known keys under '${prefix}' (${error})`).to.not.equal(null);
      const children = new Set(documented.filter((k) => k.startsWith(prefix ? `${prefix}.` : "")).map((k) => k.slice(prefix ? prefix.length + 1 : 0).split(".")[0]));
      expect([...children], `documented keys under '${prefix || "(top level)"}'`).to.have.members(known![1].split(", "));
    }
  });

  it("gives each key's default: what the stack gets with the key unset", async function () {
    let checked = 0;
    for (const row of rows()) {
      const choices = [...row.allowed.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
      if (!/^\d+$/.test(row.fallback) && !choices.includes(row.fallback)) continue;
      for (const key of row.keys) {
        const { value, error } = await load(baseFor(key));
        expect(error, key).to.equal(undefined);
        expect(String(at(value, key)), key).to.equal(row.fallback);
        checked++;
      }
    }
    expect(checked).to.be.greaterThan(12);
  });

  it("names the keys a stack must set: without one, the program refuses naming it", async function () {
    const required = rows().filter((r) => r.fallback === "(required)");
    expect(required.flatMap((r) => r.keys)).to.include.members(["platform", "aws.region", "aws.vpcId"]);
    for (const key of required.flatMap((r) => r.keys)) {
      const { error } = await load(withKey(key === "platform" ? {} : baseFor(key), key, undefined));
      expect(error, key).to.include(`${PROJECT}:${key} = (unset)`);
    }
  });

  it("gives each range's ends: they are allowed, one past either is refused naming the key", async function () {
    let checked = 0;
    for (const row of rows()) {
      const range = /^(\d+)-(\d+)\b/.exec(row.allowed);
      if (!range) continue;
      for (const key of row.keys) {
        const [min, max] = [Number(range[1]), Number(range[2])];
        for (const outside of [min - 1, max + 1]) {
          const { error } = await load(withKey(baseFor(key), key, outside));
          expect(error, `${key} = ${outside}`).to.include(`${PROJECT}:${key} = ${outside}:`);
        }
        // The ends themselves are allowed (another key may object to an extreme: not this one).
        for (const end of [min, max]) expect((await load(withKey(baseFor(key), key, end))).error ?? "", `${key} = ${end}`).to.not.include(`${PROJECT}:${key} =`);
        checked++;
      }
    }
    expect(checked).to.be.greaterThan(15);
  });
});
