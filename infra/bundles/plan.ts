// What a deploy would do, decided from the bundles and the ledger alone: which bundles are new,
// which repeatable bundles changed, which are up to date, and which are refused (an applied
// migration that was edited, or a new migration numbered below one already applied).
import { Bundle, nextMigrationName } from "./catalog";
import { LedgerEntry } from "./ledger";

export type PlanStatus = "new" | "changed" | "unchanged" | "refused";

export interface PlanEntry {
  readonly bundle: Bundle;
  readonly status: PlanStatus;
  /** The checksum the ledger holds, when the bundle was applied before. */
  readonly appliedChecksum?: string;
  /** Why a bundle is refused, and what to do about it. */
  readonly reason?: string;
}

export function editedMigrationMessage(bundle: Pick<Bundle, "file" | "name" | "checksum">, appliedChecksum: string, next: string): string {
  return (
    `${bundle.file}: migration ${bundle.name} was edited after it was applied (applied checksum ${appliedChecksum}, file checksum ${bundle.checksum}). ` +
    `Applied migrations never run again: restore the file as it was applied (git log -p -- ${bundle.file}) and put the change in a new migration, ${next}. ` +
    `If it was only ever applied to a throw-away database, recreate that instead (the local stack: npx nbdb down --purge --yes && npx nbdb up).`
  );
}

export function planBundles(bundles: readonly Bundle[], ledger: ReadonlyMap<string, LedgerEntry>): PlanEntry[] {
  // From the ledger, not from the bundles at hand: a deploy of one bundle (the SqlBundle resource)
  // must refuse an out-of-order migration as surely as a deploy of all of sql/.
  const appliedVersions = [...ledger.values()].filter((e) => e.kind === "versioned").map((e) => Number(/^V(\d+)__/.exec(e.name)?.[1] ?? 0));
  const lastApplied = Math.max(0, ...appliedVersions);
  const next = nextMigrationName(bundles);
  return bundles.map((bundle): PlanEntry => {
    const applied = ledger.get(bundle.name);
    if (bundle.kind === "repeatable") {
      if (!applied) return { bundle, status: "new" };
      return { bundle, status: applied.checksum === bundle.checksum ? "unchanged" : "changed", appliedChecksum: applied.checksum };
    }
    if (applied) {
      if (applied.checksum === bundle.checksum) return { bundle, status: "unchanged", appliedChecksum: applied.checksum };
      return { bundle, status: "refused", appliedChecksum: applied.checksum, reason: editedMigrationMessage(bundle, applied.checksum, next) };
    }
    if (bundle.order < lastApplied) {
      return {
        bundle,
        status: "refused",
        reason:
          `${bundle.file}: migration ${bundle.name} is new, but a later one (version ${lastApplied}) was already applied, and migrations apply in order only. ` +
          `Renumber it above the applied ones: ${next.replace("<name>", bundle.name.replace(/^V\d+__/, ""))}.`,
      };
    }
    return { bundle, status: "new" };
  });
}

/** The entries a deploy would apply, in order. */
export function pendingOf(plan: readonly PlanEntry[]): PlanEntry[] {
  return plan.filter((e) => e.status === "new" || e.status === "changed");
}
