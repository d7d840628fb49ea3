// The Pulumi program as a function: validate the config (before any resource exists), build the
// chosen platform, put the database layer (roles, grants, SQL bundles) on its primary, and describe
// it in the outputs. infra/index.ts runs it for the engine; tests run it under mocks, once per scenario.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { PROJECT, StackConfig, loadConfig } from "./config";
import { StackPasswords } from "./credentials";
import { DatabaseLayer } from "./database/layer";
import { PostgresMajorVersion } from "./dynamic/majorVersion";
import { StackOutputs, stackOutputs } from "./outputs";
import { AwsCluster } from "./platform/aws";
import { DockerCluster } from "./platform/docker";
import { LocalCluster } from "./platform/local";
import { Cluster, rolePasswordsOf } from "./platform/types";

const NAME = "nbdb";

/**
 * Where `pulumi up` writes the stack's CA certificate, which the outputs' URLs name: beside the local
 * stacks (NBDB_HOME, else .nbdb in the project), under `_pulumi` (no local stack can have that name).
 */
export function pulumiCaFile(stack: string): string {
  return path.resolve(process.env.NBDB_HOME ?? ".nbdb", "_pulumi", stack, "ca.crt");
}

function buildCluster(config: StackConfig, passwords: StackPasswords): Cluster {
  // Every server resource waits for it, so a refused major version change touches none of them.
  const majorVersion = new PostgresMajorVersion(`${NAME}-postgres-major-version`, { version: config.postgresVersion, platform: config.platform });
  const common = {
    majorVersion,
    postgresVersion: config.postgresVersion,
    replicas: config.replicas,
    pooler: config.pooler,
    passwords: passwords.platform(),
    physicalSuffix: config.nameSuffix,
    protectData: config.deletionProtection,
    images: config.images,
  };
  if (config.platform === "docker") return new DockerCluster(NAME, { ...common, stack: config.stack, docker: config.docker, caFile: pulumiCaFile(config.stack) });
  // The local stack's own processes; no image, so the major version is the machine's PostgreSQL.
  if (config.platform === "local") return new LocalCluster(NAME, { stack: config.stack, replicas: config.replicas, home: config.local.home, protectData: config.deletionProtection });
  // The region comes from the stack's config, not the machine's environment; tags say whose it is.
  const provider = new aws.Provider(`${NAME}-aws`, {
    region: config.aws.region,
    defaultTags: { tags: { project: PROJECT, stack: config.stack } },
  });
  return new AwsCluster(NAME, { ...common, aws: config.aws }, { providers: [provider] });
}

export function createStack(): StackOutputs {
  const config = loadConfig();
  const passwords = new StackPasswords(NAME);
  const cluster = buildCluster(config, passwords);
  const rolePasswords = rolePasswordsOf(cluster, passwords.roles);
  new DatabaseLayer(NAME, {
    cluster,
    passwords: rolePasswords,
    partitions: config.partitions,
    timeouts: config.timeouts,
    // dev and prod keep the schema objects of a bundle removed from sql/; a review database goes with its stack.
    protectedStack: !config.review,
    protectData: config.deletionProtection,
  });
  // The config's key (a restored stack's: the source's) before the generated one.
  const dataKey = config.dataKey !== undefined ? pulumi.secret(config.dataKey) : passwords.dataKey;
  return stackOutputs(config.stack, cluster, rolePasswords, cluster.dataKey ?? dataKey);
}
