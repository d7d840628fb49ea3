// Shared by the Pulumi mocks tests: run the program (createStack) under the SDK's mocks for a stack
// and its config, and record every resource registration with what the engine would receive
// (inputs with secrets revealed and marked, protect, dependencies, provider).
import * as fs from "fs";
import * as yaml from "js-yaml";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { createStack } from "../infra/stack";
import { StackOutputs } from "../infra/outputs";

export const PROJECT = "neuralblitz-db";

export interface Registration {
  readonly type: string;
  readonly name: string;
  /** With secrets revealed; `secretInputs` names the inputs that were secret. */
  readonly inputs: Record<string, any>;
  readonly secretInputs: string[];
  readonly urn: string;
  /** From the request the engine would get: what mocks' newResource does not show. */
  readonly protect: boolean;
  readonly dependencies: string[];
  /** Per input, the resources whose outputs it was computed from. */
  readonly propertyDependencies: Record<string, string[]>;
  /** `<provider urn>::<provider id>`, or empty for the default provider. */
  readonly provider: string;
  readonly retainOnDelete: boolean;
  /** Outputs the engine is told to keep secret whatever the provider returns. */
  readonly additionalSecretOutputs: string[];
  /** Where inside the inputs a secret sits, e.g. `uploads.2.content`. */
  readonly secretPaths: string[];
  readonly deleteBeforeReplace: boolean;
  readonly ignoreChanges: string[];
}

export type Config = Record<string, any>;

/** A copy of `config` with `key` (a dotted path) set, or removed when `value` is undefined. */
export function withKey(config: Config, key: string, value: unknown): Config {
  const copy: Config = JSON.parse(JSON.stringify(config));
  const parts = key.split(".");
  let at = copy;
  for (const p of parts.slice(0, -1)) at = at[p] ??= {};
  if (value === undefined) delete at[parts[parts.length - 1]];
  else at[parts[parts.length - 1]] = value;
  return copy;
}

export function stackConfigFile(stack: string): Config {
  const doc = yaml.load(fs.readFileSync(path.join(__dirname, "..", `Pulumi.${stack}.yaml`), "utf8")) as { config: Config };
  return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k.slice(`${PROJECT}:`.length), v]));
}

export const DEV = stackConfigFile("dev");
export const PROD = stackConfigFile("prod");

export function value<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply(resolve));
}

function isSecretValue(v: unknown): v is { value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig;
}

function secretPaths(v: unknown, at: string[] = []): string[] {
  if (isSecretValue(v)) return [at.join(".")];
  if (typeof v === "object" && v !== null) return Object.entries(v).flatMap(([k, x]) => secretPaths(x, [...at, k]));
  return [];
}

function reveal(v: unknown): any {
  if (isSecretValue(v)) return reveal(v.value);
  if (Array.isArray(v)) return v.map(reveal);
  if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reveal(x)]));
  return v;
}

/** Registrations drain asynchronously; this is the SDK's own wait (as `disconnect` uses it). */
export function registrationsDone(): Promise<void> {
  return (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
}

function mockState(args: pulumi.runtime.MockResourceArgs, nextPort: () => number): Record<string, any> {
  const i = args.inputs;
  switch (args.type) {
    case "docker:index/container:Container":
      // A container the provider attaches to (runs to its end) reports how it exited: here, successfully.
      return { ...i, ports: (i.ports ?? []).map((p: any) => ({ ...p, external: p.external ?? nextPort() })), ...(i.attach ? { exitCode: 0 } : {}) };
    case "docker:index/remoteImage:RemoteImage":
      return { ...i, imageId: `sha256:${i.name}` };
    case "docker:index/image:Image":
      // A local build's repoDigest is its image id.
      return { ...i, repoDigest: `sha256:built-${i.imageName}` };
    case "tls:index/privateKey:PrivateKey":
      return { ...i, privateKeyPem: `-----BEGIN PRIVATE KEY----- ${args.name}` };
    case "tls:index/selfSignedCert:SelfSignedCert":
    case "tls:index/locallySignedCert:LocallySignedCert":
      return { ...i, certPem: `-----BEGIN CERTIFICATE----- ${args.name}` };
    case "tls:index/certRequest:CertRequest":
      return { ...i, certRequestPem: `-----BEGIN CERTIFICATE REQUEST----- ${args.name}` };
    case "random:index/randomId:RandomId":
      return { ...i, hex: "0a1b2c3d" };
    case "random:index/randomPassword:RandomPassword":
      return { ...i, result: `pw-${args.name}` };
    case "aws:rds/instance:Instance":
      return { ...i, address: `${i.identifier}.c0ffee.eu-west-1.rds.amazonaws.com`, port: 5432 };
    case "aws:lb/loadBalancer:LoadBalancer":
      return { ...i, dnsName: `${i.name}-0123.elb.eu-west-1.amazonaws.com`, arn: `arn:aws:elasticloadbalancing:::${args.name}`, arnSuffix: `net/${i.name}/0123` };
    case "aws:ecr/repository:Repository":
      return { ...i, registryId: "123456789012", repositoryUrl: `123456789012.dkr.ecr.eu-west-1.amazonaws.com/${i.name}` };
    case "aws:lb/targetGroup:TargetGroup":
      return { ...i, arnSuffix: `targetgroup/${args.name}/4567` };
    case "pulumi-nodejs:dynamic/neuralblitz:LocalTopology": {
      // What the local stack's up reports; the real one runs under the engine (test/engine.local.test.ts).
      const replicas = Number(i.replicas);
      return {
        ...i,
        primary: { host: "127.0.0.1", port: 25432 },
        replicaEndpoints: Array.from({ length: replicas }, (_, k) => ({ host: "127.0.0.1", port: 25433 + k })),
        pooler: { host: "127.0.0.1", port: 26432, poolMode: "transaction" },
        adminPassword: "local-admin-pw",
        passwords: Object.fromEntries(["nb_migrator", "nb_app", "nb_readonly", "nb_auditor", "nb_pgbouncer", "nb_replicator"].map((r) => [r, `local-${r}-pw`])),
        dataKey: "local-data-key-0123456789abcdef0123456789abcdef",
        caFile: `/tmp/nbdb/${i.stack}/tls/ca.crt`,
        caCert: `mock CA certificate of ${i.stack}`,
        running: true,
      };
    }
    case "pulumi-nodejs:dynamic/neuralblitz:TlsCertificates": {
      // Stand-ins named for what they are; the real issuing is tested in test/tls.test.ts.
      const servers: { name: string }[] = i.servers ?? [];
      return {
        ...i,
        caCert: `mock CA certificate of ${i.label}`,
        caKey: `mock CA key of ${i.label}`,
        serverCerts: Object.fromEntries(servers.map((s) => [s.name, `mock certificate of ${s.name}`])),
        serverKeys: Object.fromEntries(servers.map((s) => [s.name, `mock key of ${s.name}`])),
      };
    }
    default:
      return { ...i, arn: `arn:aws:mock:::${args.name}` };
  }
}

export interface Run {
  readonly registrations: Registration[];
  readonly outputs?: StackOutputs;
  readonly error?: Error;
}

/** `secretKeys`: config keys (without the project prefix) the stack holds as secrets. */
export async function installMocks(stack: string, config: Config, secretKeys: readonly string[] = []): Promise<Registration[]> {
  const registrations: Registration[] = [];
  let port = 49152;
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => ({ id: `${args.name}-id`, state: mockState(args, () => port++) }),
      // ECR's registry login for a pushed image; every other invoke answers nothing.
      call: (args) =>
        args.token === "aws:ecr/getAuthorizationToken:getAuthorizationToken"
          ? { userName: "AWS", password: "mock-ecr-token", proxyEndpoint: `https://${args.inputs.registryId}.dkr.ecr.eu-west-1.amazonaws.com` }
          : {},
    },
    PROJECT,
    stack,
    false,
  );
  const monitor = pulumi.runtime.getMonitor() as any;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req: any, callback: (err: unknown, res: any) => void) =>
    register(req, (err: unknown, res: any) => {
      if (!err) {
        const inputs: Record<string, unknown> = pulumi.runtime.deserializeProperties(req.getObject());
        registrations.push({
          type: req.getType(),
          name: req.getName(),
          inputs: reveal(inputs),
          secretInputs: Object.keys(inputs).filter((k) => isSecretValue(inputs[k])),
          urn: res.getUrn(),
          protect: req.getProtect() === true,
          dependencies: req.getDependenciesList(),
          propertyDependencies: Object.fromEntries(
            (req.getPropertydependenciesMap().toArray() as [string, any][]).map(([k, v]) => [k, (Array.isArray(v) ? v[0] : v.getUrnsList()) as string[]]),
          ),
          provider: req.getProvider(),
          retainOnDelete: req.getRetainondelete() === true,
          additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
          secretPaths: secretPaths(inputs),
          deleteBeforeReplace: req.getDeletebeforereplace() === true,
          ignoreChanges: req.getIgnorechangesList(),
        });
      }
      callback(err, res);
    });
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(config).map(([k, v]) => [`${PROJECT}:${k}`, typeof v === "string" ? v : JSON.stringify(v)])),
    secretKeys.map((k) => `${PROJECT}:${k}`),
  );
  return registrations;
}

export async function deploy(stack: string, config: Config, secretKeys: readonly string[] = []): Promise<Run> {
  const registrations = await installMocks(stack, config, secretKeys);
  let outputs: StackOutputs | undefined;
  let error: Error | undefined;
  try {
    outputs = createStack();
  } catch (e) {
    error = e as Error;
  }
  await registrationsDone();
  return { registrations, outputs, error };
}

export async function deployed(stack: string, config: Config): Promise<Run & { outputs: StackOutputs }> {
  const run = await deploy(stack, config);
  if (run.error) throw run.error;
  return run as Run & { outputs: StackOutputs };
}

export const of = (run: Run, type: string) => run.registrations.filter((r) => r.type === type);
export const named = (run: Run, type: string, name: string) => {
  const found = run.registrations.find((r) => r.type === type && r.name === name);
  if (!found) throw new Error(`no ${type} named ${name}; registered: ${run.registrations.map((r) => `${r.type} ${r.name}`).join(", ")}`);
  return found;
};
