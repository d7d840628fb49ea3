// The GoldenDAG audit trail's trust boundary (sql/admin/golden_dag_trail.sql), written once for every
// platform: the local stack runs it as the superuser on each `nbdb up` whose text changed
// (scripts/local/bootstrap.ts), the Pulumi stacks as an AdminSql resource run by the platform's
// administrator (the Docker superuser, the RDS master user) between the bundles and the grants
// (infra/database/layer.ts). It must run after the bundles, which create the trail's tables.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { TRAIL_OWNER } from "../../schema/privileges";

export const AUDIT_TRAIL_SQL_FILE = path.resolve(__dirname, "..", "..", "sql", "admin", "golden_dag_trail.sql");

/** The marker the SQL leaves on nb_audit, so a runner can tell whether this version is installed. */
export function auditTrailMarker(sqlText: string = fs.readFileSync(AUDIT_TRAIL_SQL_FILE, "utf8")): string {
  return `nbdb audit trail ${createHash("sha256").update(sqlText.replace(/\r\n/g, "\n"), "utf8").digest("hex")}`;
}

/** The statements, for one transaction, ending with the marker of this version. */
export function auditTrailSql(): string {
  const text = fs.readFileSync(AUDIT_TRAIL_SQL_FILE, "utf8");
  return `${text}\nRESET ROLE;\nCOMMENT ON ROLE ${TRAIL_OWNER} IS '${auditTrailMarker(text)}';\n`;
}

/** The marker as the database holds it (null before the first run); readable by any role. */
export const INSTALLED_MARKER_SQL = `SELECT pg_catalog.shobj_description(r.oid, 'pg_authid') AS marker FROM pg_catalog.pg_roles r WHERE r.rolname = '${TRAIL_OWNER}'`;
