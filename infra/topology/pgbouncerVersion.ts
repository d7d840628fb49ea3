// The one PgBouncer version every platform runs (docs/pooler.md says why): the local stack builds
// it from Debian 13's source package (scripts/local/setup.ts), the Docker and AWS stacks pin an
// image of the same minor version (infra/platform/images.ts; a test checks they agree).

/** Upstream version. 1.21 added protocol-level prepared statements; 1.24 parses `options`. */
export const PGBOUNCER_VERSION = "1.24.1";

/** Debian 13's source package of it, with Debian's security patches (CVE-2025-12819 and later). */
export const PGBOUNCER_DEBIAN_SOURCE = "1.24.1-1+deb13u2";

/** Anything older than this is refused: its pooling of prepared statements and startup parameters differs. */
export const PGBOUNCER_MIN_VERSION = "1.24.0";

/** "PgBouncer 1.24.1" (the first line of `pgbouncer --version`, or SHOW VERSION) -> "1.24.1". */
export function parsePgbouncerVersion(text: string): string | undefined {
  return /PgBouncer\s+(\d+\.\d+\.\d+)/i.exec(text)?.[1];
}

/** Negative, zero or positive as a is older than, equal to or newer than b (x.y.z). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

/** "1.24.1" -> "1.24". */
export function minorOf(version: string): string {
  return version.split(".").slice(0, 2).join(".");
}
