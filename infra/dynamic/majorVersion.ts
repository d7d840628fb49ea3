// PostgresMajorVersion: remembers the stack's PostgreSQL major version and refuses to change it.
// The config cannot tell an upgrade from a first deploy (it sees only the new value); this resource's
// state holds the version the stack runs, and its provider's `check` fails a changed one in preview
// and up alike, before any server resource (which all depend on it) is touched: so no stack is left
// half upgraded. On Docker the new image would start on the old data directory and never become
// healthy; on RDS the instance refuses a major upgrade without allowMajorVersionUpgrade, and the
// replicas and the parameter group family must move with it. docs/platforms.md has the steps.
import * as pulumi from "@pulumi/pulumi";

export interface MajorVersionInputs {
  readonly version: string;
  readonly platform: "docker" | "aws" | "local";
}

/** Why `from` → `to` is refused, and what to do instead. */
export function majorVersionChangeMessage(platform: MajorVersionInputs["platform"], from: string, to: string): string {
  const keep = `Keep postgresVersion at ${from} (pulumi config set postgresVersion ${from})`;
  const how =
    platform !== "aws"
      ? `the PostgreSQL ${to} ${platform === "local" ? "server" : "image"} cannot start on a data directory of PostgreSQL ${from}. ${keep}, or move the data: pg_dumpall from this stack, ` +
        `bring up a new stack with postgresVersion ${to}, restore into it, then destroy this one`
      : `RDS upgrades a major version only when asked to (allowMajorVersionUpgrade), with the replicas and a parameter group of the new family, ` +
        `and cannot go back. ${keep}, or upgrade with an RDS blue/green deployment (aws rds create-blue-green-deployment --target-engine-version ${to}...), ` +
        `switch over, then set postgresVersion ${to} and run pulumi refresh and pulumi up`;
  return `postgresVersion ${from} → ${to} is a major version change, which this program does not make in place: ${how}. See docs/platforms.md, "Major versions".`;
}

export function majorVersionProvider(): pulumi.dynamic.ResourceProvider {
  return {
    async check(olds: Partial<MajorVersionInputs>, news: MajorVersionInputs): Promise<pulumi.dynamic.CheckResult> {
      if (olds.version !== undefined && olds.version !== news.version) {
        return { inputs: news, failures: [{ property: "version", reason: majorVersionChangeMessage(news.platform, olds.version, news.version) }] };
      }
      return { inputs: news };
    },
    async create(inputs: MajorVersionInputs): Promise<pulumi.dynamic.CreateResult> {
      return { id: "postgres-major-version", outs: inputs };
    },
    async diff(_id: pulumi.ID, olds: MajorVersionInputs, news: MajorVersionInputs): Promise<pulumi.dynamic.DiffResult> {
      return { changes: olds.version !== news.version || olds.platform !== news.platform };
    },
    async update(_id: pulumi.ID, _olds: MajorVersionInputs, news: MajorVersionInputs): Promise<pulumi.dynamic.UpdateResult> {
      return { outs: news };
    },
    async delete(): Promise<void> {},
  };
}

const provider = majorVersionProvider();

export class PostgresMajorVersion extends pulumi.dynamic.Resource {
  constructor(name: string, inputs: MajorVersionInputs, opts?: pulumi.CustomResourceOptions) {
    super(provider, name, { ...inputs }, opts, "neuralblitz", "PostgresMajorVersion");
  }
}
