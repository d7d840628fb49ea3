// The database layer of the local stack, in the order the Pulumi stacks declare it: SQL bundles
// (through the shared applier), partitions ahead, grants from the privilege model, then the
// maintenance schedule (pg_cron, where the server has it). Each step
// reports only what it changed, so `nbdb up` on an up-to-date stack reports nothing.
import { Client } from "pg";
import { applyBundles } from "../../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../../infra/bundles/catalog";
import { partitionMaintenanceBundle } from "../../infra/database/partitionMaintenance";
import { convergeGrants } from "../ops/grants";
import { maintainPartitions, summarizePartitionActions } from "../ops/partitions";
import { ensureMaintenanceSchedule } from "../ops/schedule";

/**
 * Converge the database reached at `migratorUrl`. With another bundle directory than the
 * repository's (tests), only the bundles are applied: the privilege model describes sql/.
 */
export async function convergeDatabase(
  urls: { migrator: string; admin: string },
  bundleDir: string,
  log: (line: string) => void,
  auditTrail: () => Promise<string[]> = async () => [],
): Promise<string[]> {
  const migratorUrl = urls.migrator;
  const applied = await applyBundles({ url: migratorUrl, log }, loadCatalog(bundleDir));
  const changes = applied.map((b) => `applied ${b.kind} bundle ${b.name}${b.status === "changed" ? " (changed)" : ""}`);
  if (bundleDir !== REPO_BUNDLE_DIR) return changes;
  // nb_owner's grants first (nb_audit's USAGE/CREATE on the schema among them), then the audit
  // trail's trust boundary as the administrator, then partitions (the trail's are nb_audit's).
  const client = new Client({ connectionString: migratorUrl, application_name: "nbdb-grants" });
  await client.connect();
  try {
    const statements = await convergeGrants(client);
    if (statements.length > 0) changes.push(`brought grants in line with the privilege model (${statements.length} statements)`);
  } finally {
    await client.end();
  }
  changes.push(...(await auditTrail()));
  // The partition policy (schema/tables.ts) through the same generated bundle the Pulumi stacks apply.
  const policy = await applyBundles({ url: migratorUrl, log }, [partitionMaintenanceBundle()]);
  changes.push(...policy.map((b) => `applied ${b.kind} bundle ${b.name}${b.status === "changed" ? " (changed)" : ""}`));
  changes.push(...summarizePartitionActions(await maintainPartitions(migratorUrl)));
  const scheduled = await ensureMaintenanceSchedule(urls);
  if (scheduled) changes.push(scheduled);
  return changes;
}
