// nbdb setup: install what the local stack (and the test suite) needs on this machine.
import { PGBOUNCER_VERSION } from "../../infra/topology/pgbouncerVersion";
import { PGBOUNCER_EXPORTER_VERSION } from "../../infra/topology/monitoring";
import { SERVER_PACKAGES, TEST_PACKAGES, ensureSystem, ensureTestSystem } from "../local/setup";
import { findBinaries } from "../local/system";
import { defineCommand } from "./command";

export default defineCommand({
  name: "setup",
  description: `install what the local stack needs on this machine (root, Debian/Ubuntu): ${SERVER_PACKAGES.join(", ")} and PgBouncer ${PGBOUNCER_VERSION} built from Debian 13's source package; skips what is there`,
  options: [{ flags: "--for-tests", help: `also what the test suite needs: ${TEST_PACKAGES.join(", ")}, and PgBouncer's exporter (prometheus-pgbouncer-exporter ${PGBOUNCER_EXPORTER_VERSION}, pinned, in a virtual environment)` }],
  run: (o: { forTests?: boolean }, { log }) => (o.forTests ? ensureTestSystem(log) : ensureSystem(log)),
  text(r, _o, print) {
    print(r.installed.length ? `installed: ${r.installed.join(", ")}` : "everything the local stack needs is installed.");
    print(`PgBouncer: ${findBinaries().pgbouncer} (${findBinaries().pgbouncerVersion})`);
  },
});
