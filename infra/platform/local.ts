// The `local` platform: the primary, the replicas and PgBouncer as processes on the machine that
// runs `pulumi up`, for review stacks on laptops and CI runners without a Docker engine. They are
// the local stack's own (scripts/local/), reached through one dynamic resource, LocalTopology,
// whose provider calls the same up/down/status as `nbdb` (infra/platform/localTopology.ts). Each
// Pulumi stack gets its own local stack (`pulumi-<stack>`): its own directory and ports, so several
// run side by side, and `nbdb status --stack pulumi-<stack>` shows it.
//
// The provider is a serialized closure run by the engine in another process: like SqlBundle's, it
// captures two plain strings (the adapter's path and tsconfig.json's) and requires the adapter there.
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { LoginRoleName, ROLES, RoleName } from "../../schema/roles";
import { caFile } from "../../scripts/local/state";
import { LocalTopologyInputs, LocalTopologyOutputs, inHome } from "./localTopology";
import { ADMIN_USER, AdminLogin, Cluster, Endpoint, PoolerEndpoint } from "./types";

const ADAPTER_MODULE = path.join(__dirname, "localTopology");
const TSCONFIG = path.join(__dirname, "..", "..", "tsconfig.json");

/** The local stack a Pulumi stack's servers are: a valid local stack name (scripts/local/state.ts). */
export function localStackName(pulumiStack: string): string {
  const name = `pulumi-${pulumiStack.toLowerCase().replace(/[^a-z0-9-]+/g, "-")}`.replace(/-+$/, "");
  if (name.length > 40) throw new Error(`stack name '${pulumiStack}' is too long for the local platform (its servers' directory '${name}' has more than 40 characters): use a shorter stack name.`);
  return name;
}

export function localTopologyProvider(adapterModule: string = ADAPTER_MODULE, tsconfig: string = TSCONFIG): pulumi.dynamic.ResourceProvider {
  const adapter = (): typeof import("./localTopology") => {
    if (!require.extensions[".ts"]) require("ts-node").register({ transpileOnly: true, project: tsconfig });
    return require(adapterModule);
  };
  const inputsOf = (p: LocalTopologyInputs): LocalTopologyInputs => ({ stack: p.stack, replicas: p.replicas, home: p.home, keepData: p.keepData });
  return {
    async create(inputs: LocalTopologyInputs): Promise<pulumi.dynamic.CreateResult> {
      return { id: inputs.stack, outs: await adapter().applyTopology(inputsOf(inputs)) };
    },

    // Another stack name or home is another set of servers; a replica count or a node found
    // stopped is converged in place (only the tail replicas change, the primary keeps running).
    async diff(_id: pulumi.ID, olds: LocalTopologyOutputs, news: LocalTopologyInputs): Promise<pulumi.dynamic.DiffResult> {
      const replaces = (["stack", "home"] as const).filter((k) => olds[k] !== news[k]);
      const changes = replaces.length > 0 || olds.replicas !== news.replicas || olds.keepData !== news.keepData || olds.running === false;
      return { changes, replaces };
    },

    async update(_id: pulumi.ID, _olds: LocalTopologyOutputs, news: LocalTopologyInputs): Promise<pulumi.dynamic.UpdateResult> {
      return { outs: await adapter().applyTopology(inputsOf(news)) };
    },

    async read(id: pulumi.ID, props: LocalTopologyOutputs): Promise<pulumi.dynamic.ReadResult> {
      const now = await adapter().readTopology(inputsOf(props));
      return now ? { id, props: now } : { id: "" };
    },

    // keepData (deletionProtection) stops the servers and keeps their directory; otherwise both go.
    async delete(_id: pulumi.ID, props: LocalTopologyOutputs): Promise<void> {
      await adapter().removeTopology(inputsOf(props));
    },
  };
}

const provider = localTopologyProvider();

export class LocalTopology extends pulumi.dynamic.Resource {
  declare public readonly primary: pulumi.Output<Endpoint>;
  declare public readonly replicaEndpoints: pulumi.Output<Endpoint[]>;
  declare public readonly pooler: pulumi.Output<PoolerEndpoint>;
  declare public readonly adminPassword: pulumi.Output<string>;
  declare public readonly passwords: pulumi.Output<Record<LoginRoleName, string>>;
  declare public readonly dataKey: pulumi.Output<string>;
  declare public readonly caFile: pulumi.Output<string>;
  declare public readonly caCert: pulumi.Output<string>;

  constructor(name: string, args: { [K in keyof LocalTopologyInputs]: pulumi.Input<LocalTopologyInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
    const outputs: Record<Exclude<keyof LocalTopologyOutputs, keyof LocalTopologyInputs>, undefined> = {
      primary: undefined,
      replicaEndpoints: undefined,
      pooler: undefined,
      adminPassword: undefined,
      passwords: undefined,
      dataKey: undefined,
      caFile: undefined,
      caCert: undefined,
      running: undefined,
    };
    super(provider, name, { ...args, ...outputs }, { ...opts, additionalSecretOutputs: ["adminPassword", "passwords", "dataKey"] }, "neuralblitz", "LocalTopology");
  }
}

export interface LocalClusterArgs {
  /** The Pulumi stack's name; its servers are the local stack localStackName(stack). */
  readonly stack: string;
  readonly replicas: number;
  /** Where the local stacks live (NBDB_HOME); absent for nbdb's default. */
  readonly home?: string;
  readonly protectData: boolean;
}

/**
 * The Cluster contract on local processes. The local stack creates every role with its own
 * generated passwords (bootstrap), so the database layer declares no Role there, and the stack's
 * connections use the local stack's passwords (`rolePasswords`).
 */
export class LocalCluster extends pulumi.ComponentResource implements Cluster {
  readonly primary: pulumi.Output<Endpoint>;
  readonly replicas: pulumi.Output<Endpoint[]>;
  readonly pooler: pulumi.Output<PoolerEndpoint>;
  readonly admin: pulumi.Output<AdminLogin>;
  /** The local stack's CA: every hop is TLS, verify-full against it (docs/tls.md). */
  readonly serverCaFile: string;
  readonly serverCa: pulumi.Output<string>;
  readonly poolerTls: { readonly caCertificate: pulumi.Output<string>; readonly caFile: string };
  /** pg_cron is optional on a machine; maintenance runs by `nbdb maintain --stack <local stack>` where it is absent. */
  readonly pgCron = false;
  readonly platformRolesSql = undefined;
  readonly platformRoles: readonly RoleName[] = ROLES.map((r) => r.name);
  readonly rolePasswords: pulumi.Output<Record<LoginRoleName, string>>;
  readonly dataKey: pulumi.Output<string>;
  readonly topology: LocalTopology;

  constructor(name: string, args: LocalClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("neuralblitz:platform:LocalCluster", name, {}, opts);
    this.topology = new LocalTopology(
      `${name}-topology`,
      { stack: localStackName(args.stack), replicas: args.replicas, home: args.home ?? "", keepData: args.protectData },
      { parent: this, protect: args.protectData },
    );
    // Where the local stack keeps its CA (known before the topology exists, so the URLs can name it).
    this.serverCaFile = inHome(args.home, () => caFile(localStackName(args.stack)));
    this.serverCa = this.topology.caCert;
    this.poolerTls = { caCertificate: this.topology.caCert, caFile: this.serverCaFile };
    this.primary = this.topology.primary;
    this.replicas = this.topology.replicaEndpoints;
    this.pooler = this.topology.pooler;
    this.admin = pulumi.secret(
      pulumi.all([this.topology.primary, this.topology.adminPassword]).apply(([p, password]) => ({ host: p.host, port: p.port, username: ADMIN_USER, password, superuser: true })),
    );
    this.rolePasswords = pulumi.secret(this.topology.passwords);
    this.dataKey = pulumi.secret(this.topology.dataKey);
    this.registerOutputs({});
  }
}
