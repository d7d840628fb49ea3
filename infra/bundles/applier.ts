// The bundle applier, used alike by `nbdb up` / `nbdb plan` and by the SqlBundle dynamic provider.
// It connects straight to the primary as nb_migrator (never through PgBouncer: it needs a session
// for its lock), takes the deploy lock, refuses the whole deploy if any bundle is refused, then
// applies each pending bundle and records it in the ledger, stopping at the first failure.
// Transactional bundles run as one simple query inside BEGIN ... COMMIT with their ledger row, so a
// failure or an interruption leaves the database as it was before the bundle, and PostgreSQL's
// error position is an offset into the file.
import { Client, Query } from "pg";
import { version as TOOL_VERSION } from "../../package.json";
import { Bundle } from "./catalog";
import { BundleError, isPgError, sqlErrorInBundle } from "./errors";
import { readLedger, recordApplication } from "./ledger";
import { acquireDeployLock } from "./lock";
import { PlanEntry, pendingOf, planBundles } from "./plan";
import { indexOfPosition, splitStatements } from "./sqlSplit";

export const DEPLOY_APPLICATION_NAME = "nbdb-deploy";
export const DEFAULT_DEPLOY_LOCK_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_OBJECT_LOCK_TIMEOUT = "30s";
const OBJECT_OWNER = "nb_owner";

// The SqlBundle provider reaches the engine through this module alone.
export { editedMigrationMessage } from "./plan";

export interface DeployTarget {
  /** postgresql:// URL of the primary, as nb_migrator. */
  readonly url: string;
  readonly log?: (line: string) => void;
  /** How long to wait for another deploy of the same database before giving up. */
  readonly deployLockTimeoutMs?: number;
  /** lock_timeout for the bundles' statements, so a deploy never waits forever behind the application. */
  readonly objectLockTimeout?: string;
}

export interface AppliedBundle {
  readonly name: string;
  readonly kind: Bundle["kind"];
  readonly file: string;
  /** 'new', or 'changed' for a repeatable bundle applied again. */
  readonly status: "new" | "changed";
  readonly durationMs: number;
}

async function connect(target: DeployTarget): Promise<Client> {
  const client = new Client({ connectionString: target.url, application_name: DEPLOY_APPLICATION_NAME });
  // A connection lost while idle is reported by the next query; without a listener it would crash the process.
  client.on("error", () => undefined);
  await client.connect().catch((e: Error) => {
    const u = new URL(target.url);
    throw new BundleError(
      `cannot connect to ${u.hostname}:${u.port || 5432}${u.pathname} as ${decodeURIComponent(u.username)} to apply SQL bundles: ${e.message}. ` +
        `Check that the primary is up and reachable directly (not through PgBouncer), e.g. for the local stack: npx nbdb status`,
    );
  });
  // client_connection_check_interval: a deploy killed mid-bundle has its statement cancelled and its
  // transaction rolled back within a second, instead of holding its locks until the statement ends.
  await client.query(
    `SELECT pg_catalog.set_config('statement_timeout', '0', false),
            pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false),
            pg_catalog.set_config('client_connection_check_interval', '1s', false),
            pg_catalog.set_config('lock_timeout', $1, false)`,
    [target.objectLockTimeout ?? DEFAULT_OBJECT_LOCK_TIMEOUT],
  );
  return client;
}

async function withConnection<T>(target: DeployTarget, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await connect(target);
  try {
    return await fn(client);
  } finally {
    // Ending the session also releases the deploy lock.
    await client.end().catch(() => undefined);
  }
}

/** What a deploy of `bundles` would do now. Reads the ledger only; takes no lock, changes nothing. */
export async function planDeploy(target: DeployTarget, bundles: readonly Bundle[]): Promise<PlanEntry[]> {
  return withConnection(target, async (client) => planBundles(bundles, await readLedger(client)));
}

/** Apply every pending bundle in order; returns what was applied (nothing when all are up to date). */
export async function applyBundles(target: DeployTarget, bundles: readonly Bundle[]): Promise<AppliedBundle[]> {
  const log = target.log ?? (() => undefined);
  return withConnection(target, async (client) => {
    const lock = await acquireDeployLock(client, target.deployLockTimeoutMs ?? DEFAULT_DEPLOY_LOCK_TIMEOUT_MS, log, () => connect(target));
    try {
      const plan = planBundles(bundles, await readLedger(client));
      const refused = plan.filter((e) => e.status === "refused");
      if (refused.length > 0) throw new BundleError(`${refused.map((e) => e.reason).join("\n")}\nNothing was applied.`);
      const applied: AppliedBundle[] = [];
      for (const { bundle, status } of pendingOf(plan)) {
        log(`applying ${bundle.file}${status === "changed" ? " (changed since it was applied)" : ""}`);
        try {
          const durationMs = bundle.transactional ? await applyInTransaction(client, bundle) : await applyStatementByStatement(client, bundle);
          applied.push({ name: bundle.name, kind: bundle.kind, file: bundle.file, status: status as AppliedBundle["status"], durationMs });
          await lock.upgrade();
        } catch (e) {
          if (applied.length > 0 && e instanceof Error) e.message += `\nApplied and recorded before it: ${applied.map((a) => a.name).join(", ")}.`;
          throw e;
        }
      }
      return applied;
    } finally {
      await lock.release();
    }
  });
}

interface QueryHandlers {
  handleCommandComplete(message: unknown, connection: unknown): void;
}

/** A simple query that counts its finished statements, to tell which one failed when PostgreSQL gives no position. */
class StatementCountingQuery extends Query {
  completedStatements = 0;

  handleCommandComplete(message: unknown, connection: unknown): void {
    this.completedStatements++;
    (Query.prototype as unknown as QueryHandlers).handleCommandComplete.call(this, message, connection);
  }
}

function run(client: Client, query: Query): Promise<void> {
  return new Promise((resolve, reject) => {
    query.on("end", () => resolve());
    query.on("error", reject);
    client.query(query);
  });
}

// Class 08 (connection exception) and 57 (operator intervention: terminated, server shutting down).
const INTERRUPTION = /^(08|57)/;

type Locate = (position: number | undefined) => { index: number; exact: boolean };

/** A failure outside the bundle's own SQL: the connection was lost, or one of the applier's statements failed. */
function stepFailure(bundle: Bundle, step: string, err: unknown): BundleError {
  if (err instanceof BundleError) return err;
  const message = (err as Error).message;
  if (!isPgError(err) || INTERRUPTION.test(err.code!)) {
    const what = bundle.transactional
      ? "The server rolled its transaction back, so the database is as it was before this bundle and the ledger is unchanged"
      : "It ran outside a transaction, so the statements before the interruption stay applied; its ledger row was not written";
    return new BundleError(`${bundle.file}: the deploy was interrupted while applying it (${message}). ${what}. Run the deploy again to apply it.`);
  }
  return new BundleError(`${bundle.file}: ${step} failed: ${message}${err.code ? ` (SQLSTATE ${err.code})` : ""}. Nothing of this bundle was recorded; fix the cause and run again.`);
}

/** A failure of the bundle's own SQL, located in its file. */
function sqlFailure(bundle: Bundle, err: unknown, locate: Locate): BundleError {
  if (!isPgError(err) || INTERRUPTION.test(err.code!)) return stepFailure(bundle, "applying it", err);
  return sqlErrorInBundle(bundle, err, locate(err.position ? Number(err.position) : undefined));
}

const LEDGER_STEP = "recording it in neuralblitz.bundle_ledger (created by the first migration, V001__bundle_ledger.sql)";

async function applyInTransaction(client: Client, bundle: Bundle): Promise<number> {
  // SET LOCAL: the role and search_path end with the transaction, and are set again before the
  // ledger row in case the bundle changed them. search_path = pg_catalog makes every project name
  // in a bundle schema-qualified, or an error.
  const asOwner = `SET LOCAL ROLE ${OBJECT_OWNER}; SET LOCAL search_path = pg_catalog`;
  const query = new StatementCountingQuery(bundle.sql);
  const locate: Locate = (position) => {
    if (position !== undefined) return { index: indexOfPosition(bundle.sql, position), exact: true };
    const statements = splitStatements(bundle.sql);
    const failed = statements[Math.min(query.completedStatements, statements.length - 1)];
    return { index: failed?.offset ?? 0, exact: false };
  };
  try {
    await client.query("BEGIN").catch((e) => Promise.reject(stepFailure(bundle, "BEGIN", e)));
    await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET LOCAL ROLE ${OBJECT_OWNER}`, e)));
    const started = performance.now();
    await run(client, query).catch((e) => Promise.reject(sqlFailure(bundle, e, locate)));
    const durationMs = performance.now() - started;
    await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET LOCAL ROLE ${OBJECT_OWNER}`, e)));
    await recordApplication(client, bundle, durationMs, TOOL_VERSION).catch((e) => Promise.reject(stepFailure(bundle, LEDGER_STEP, e)));
    await client.query("COMMIT").catch((e) => Promise.reject(stepFailure(bundle, "COMMIT", e)));
    return durationMs;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

/** For bundles declared `-- nbdb:no-transaction`: each statement on its own; the ledger row only after all succeeded. */
async function applyStatementByStatement(client: Client, bundle: Bundle): Promise<number> {
  // Session-level SET is safe here: this connection is direct, never pooled, and ends with the deploy.
  const asOwner = `SET ROLE ${OBJECT_OWNER}; SET search_path = pg_catalog`;
  await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET ROLE ${OBJECT_OWNER}`, e)));
  const started = performance.now();
  try {
    for (const statement of splitStatements(bundle.sql)) {
      await client.query(statement.text).catch((e) =>
        Promise.reject(
          sqlFailure(bundle, e, (position) =>
            position !== undefined ? { index: statement.offset + indexOfPosition(statement.text, position), exact: true } : { index: statement.offset, exact: false },
          ),
        ),
      );
    }
    const durationMs = performance.now() - started;
    await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET ROLE ${OBJECT_OWNER}`, e)));
    await recordApplication(client, bundle, durationMs, TOOL_VERSION).catch((e) => Promise.reject(stepFailure(bundle, LEDGER_STEP, e)));
    return durationMs;
  } finally {
    await client.query("RESET ROLE; RESET search_path").catch(() => undefined);
  }
}
