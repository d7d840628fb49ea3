// SqlBundle: one SQL bundle of sql/ as a Pulumi resource, applied by the same applier `nbdb up`
// uses (infra/bundles/applier.ts), so what the tests exercise on the local stack is what
// `pulumi up` runs in dev and prod.
//
// The provider is a serialized closure run by the Pulumi engine in a separate process, from the
// state as well as from the program. It therefore captures two plain strings only: the absolute
// paths of the applier module and of tsconfig.program.json. Inside a method it registers ts-node (unless
// the process already compiles TypeScript, as the program's own process and mocha do) and
// requires the applier by path, which loads pg and the rest there. Serializing the applier's
// functions instead would drag its whole module graph (pg's classes, fs) into the closure, which
// docs/architecture.md ("Conventions") forbids. The paths are those of the machine running `pulumi up`, which is also
// where the engine runs the provider; delete needs neither, so a stack whose state was written
// elsewhere can still drop resources.
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import type { Bundle } from "../bundles/catalog";

/** What the provider receives: the bundle's plain fields and the nb_migrator URL of the primary. */
export interface SqlBundleInputs {
  readonly bundleName: string;
  readonly kind: Bundle["kind"];
  readonly order: number;
  readonly file: string;
  readonly sql: string;
  readonly checksum: string;
  readonly transactional: boolean;
  readonly connection: string;
}

/**
 * What the state keeps as outputs: no SQL text. The connection is kept, as a secret, because a
 * refresh gives the provider only the outputs; `database` says which database the bundle is in.
 */
export interface SqlBundleOutputs {
  readonly bundleName: string;
  readonly kind: Bundle["kind"];
  readonly file: string;
  readonly checksum: string;
  readonly transactional: boolean;
  /** The identity of the database it was applied to (infra/bundles/deployed.ts); absent in state written before it was kept. */
  readonly database?: string;
  readonly connection?: string;
}

const APPLIER_MODULE = path.join(__dirname, "..", "bundles", "applier");
const DEPLOYED_MODULE = path.join(__dirname, "..", "bundles", "deployed");
const TSCONFIG = path.join(__dirname, "..", "..", "tsconfig.program.json");

export function sqlBundleProvider(applierModule: string = APPLIER_MODULE, tsconfig: string = TSCONFIG, deployedModule: string = DEPLOYED_MODULE): pulumi.dynamic.ResourceProvider {
  const typescript = (): void => {
    if (!require.extensions[".ts"]) require("ts-node").register({ transpileOnly: true, project: tsconfig });
  };
  const loadApplier = (): typeof import("../bundles/applier") => {
    typescript();
    return require(applierModule);
  };
  const deployed = (url: string, name: string): ReturnType<typeof import("../bundles/deployed").deployedBundle> => {
    typescript();
    return (require(deployedModule) as typeof import("../bundles/deployed")).deployedBundle(url, name);
  };
  const bundleOf = (i: SqlBundleInputs): Bundle => ({
    name: i.bundleName,
    kind: i.kind,
    order: i.order,
    file: i.file,
    sql: i.sql,
    checksum: i.checksum,
    transactional: i.transactional,
  });
  const outputsOf = (i: SqlBundleInputs, database: string): SqlBundleOutputs => ({
    bundleName: i.bundleName,
    kind: i.kind,
    file: i.file,
    checksum: i.checksum,
    transactional: i.transactional,
    database,
    connection: i.connection,
  });
  const refuseEditedMigration = (olds: SqlBundleOutputs, news: SqlBundleInputs): void => {
    if (news.kind === "versioned" && olds.checksum !== news.checksum) {
      throw new Error(loadApplier().editedMigrationMessage(bundleOf(news), olds.checksum, "a new migration numbered above the last one in sql/migrations/"));
    }
  };
  // No progress log: the engine does not show a dynamic provider's output. A deploy waiting for
  // another one shows as a long create/update, and fails after the lock timeout naming the holder.
  const apply = async (inputs: SqlBundleInputs): Promise<SqlBundleOutputs> => {
    await loadApplier().applyBundles({ url: inputs.connection }, [bundleOf(inputs)]);
    return outputsOf(inputs, (await deployed(inputs.connection, inputs.bundleName)).database);
  };

  return {
    // Adopts a bundle the ledger already holds with the same checksum; refuses one it holds edited.
    async create(inputs: SqlBundleInputs): Promise<pulumi.dynamic.CreateResult> {
      return { id: inputs.bundleName, outs: await apply(inputs) };
    },

    // The checksum decides, and the database: one replaced under the stack (another identity), or
    // whose ledger no longer holds the bundle, gets it applied again. A new connection string alone
    // (a rotated password) is no reason to apply anything. An edited migration fails the preview
    // already, with both checksums, before anything runs.
    async diff(_id: pulumi.ID, olds: SqlBundleOutputs, news: SqlBundleInputs): Promise<pulumi.dynamic.DiffResult> {
      const renamed = olds.bundleName !== news.bundleName || olds.kind !== news.kind;
      if (renamed) return { changes: true, replaces: ["bundleName"] };
      refuseEditedMigration(olds, news);
      let gone = false;
      if (olds.database !== undefined) {
        // Unreachable here (a preview away from the servers): the checksum decides; up itself connects.
        const now = await deployed(news.connection, news.bundleName).catch(() => undefined);
        gone = now !== undefined && (now.database !== olds.database || now.checksum === undefined);
      }
      return { changes: gone || olds.checksum !== news.checksum };
    },

    async update(_id: pulumi.ID, olds: SqlBundleOutputs, news: SqlBundleInputs): Promise<pulumi.dynamic.UpdateResult> {
      refuseEditedMigration(olds, news);
      return { outs: await apply(news) };
    },

    // Refresh: what the ledger of that database holds. A bundle the ledger no longer holds, or one of
    // a database replaced since, is gone (so the next up applies it); another checksum shows as drift.
    async read(id: pulumi.ID, props: SqlBundleOutputs): Promise<pulumi.dynamic.ReadResult> {
      if (!props.connection) return { id, props };
      const now = await deployed(props.connection, props.bundleName);
      if (now.checksum === undefined || (props.database !== undefined && now.database !== props.database)) return { id: "" };
      return { id, props: { ...props, checksum: now.checksum, database: now.database } };
    },

    // Never drops schema objects and never connects. Protected stacks (dev, prod) do not even get
    // here: their SqlBundles are retainOnDelete, so Pulumi only forgets them. In review stacks this
    // forgets the bundle too: its objects and ledger row stay until the review database is
    // destroyed with its stack, which is what happens when the stack is destroyed.
    async delete(): Promise<void> {},
  };
}

export interface SqlBundleArgs {
  /** A bundle read from sql/ by loadCatalog(). */
  readonly bundle: Bundle;
  /** postgresql:// URL of the primary (never the pooler) as nb_migrator; stored as a secret. */
  readonly connection: pulumi.Input<string>;
  /** Protected stacks (dev, prod) keep the bundle's objects when the resource goes: retainOnDelete. */
  readonly protectedStack: boolean;
}

const provider = sqlBundleProvider();

// `declare`: with the ES2022 target, plain field declarations would be initialised after super()
// and overwrite the outputs the resource constructor set.
export class SqlBundle extends pulumi.dynamic.Resource {
  declare public readonly bundleName: pulumi.Output<string>;
  declare public readonly kind: pulumi.Output<Bundle["kind"]>;
  declare public readonly file: pulumi.Output<string>;
  declare public readonly checksum: pulumi.Output<string>;
  declare public readonly transactional: pulumi.Output<boolean>;

  constructor(name: string, args: SqlBundleArgs, opts?: pulumi.CustomResourceOptions) {
    const { bundle } = args;
    const inputs: Record<keyof SqlBundleInputs, pulumi.Input<unknown>> = {
      bundleName: bundle.name,
      kind: bundle.kind,
      order: bundle.order,
      file: bundle.file,
      sql: bundle.sql,
      checksum: bundle.checksum,
      transactional: bundle.transactional,
      connection: pulumi.secret(args.connection),
    };
    super(
      provider,
      name,
      inputs,
      { ...opts, retainOnDelete: args.protectedStack || opts?.retainOnDelete, additionalSecretOutputs: ["connection", ...(opts?.additionalSecretOutputs ?? [])] },
      "neuralblitz",
      "SqlBundle",
    );
  }
}

/** One SqlBundle per bundle, each depending on the one before it, so they apply in catalog order. */
export function sqlBundles(
  name: string,
  args: { bundles: readonly Bundle[]; connection: pulumi.Input<string>; protectedStack: boolean },
  opts?: pulumi.CustomResourceOptions,
): SqlBundle[] {
  const resources: SqlBundle[] = [];
  for (const bundle of args.bundles) {
    const previous = resources[resources.length - 1];
    resources.push(
      new SqlBundle(`${name}-${bundle.name}`, { bundle, connection: args.connection, protectedStack: args.protectedStack }, { ...opts, dependsOn: previous ? [previous] : opts?.dependsOn }),
    );
  }
  return resources;
}
