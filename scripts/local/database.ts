// The database layer of the local stack, in the order the Pulumi stacks declare it: SQL bundles
// (through the shared applier), partitions ahead, grants from the privilege model, then the
// maintenance schedule (pg_cron, where the server has it). Each step
// reports only what it changed, so `nbdb up` on an up-to-date stack reports nothing.
import { withClient } from "../db";
import { applyBundles } from "../../infra/bundles/applier";
import { REPO_BUNDLE_DIR, loadCatalog } from "../../infra/bundles/catalog";
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
  const statements = await withClient(migratorUrl, (client) => convergeGrants(client), "nbdb-grants");
  if (statements.length > 0) changes.push(`brought grants in line with the privilege model (${statements.length} statements)`);
  changes.push(...(await auditTrail()));
  changes.push(...summarizePartitionActions(await maintainPartitions(migratorUrl)));
  const scheduled = await ensureMaintenanceSchedule(urls);
  if (scheduled) changes.push(scheduled);
  return changes;
}
