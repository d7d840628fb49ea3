// PgBouncer's metrics exporter as both container platforms run it: the same image
// (infra/platform/pgbouncerExporterImage/), paths, port and config (the shared renderer of
// infra/topology/monitoring.ts), on the pooler's admin console as nb_monitor over TLS verify-full.
// Docker runs it as a container beside the pooler, AWS as a sidecar in the pooler's task.
import { PGBOUNCER_EXPORTER_PASSWORD_VARIABLE, PGBOUNCER_EXPORTER_PORT, pgbouncerExporterYaml } from "../topology/monitoring";
import { POOLER_PORT } from "./poolerContainer";

/** The image's directory for the exporter's files (its user's, mode 0700). */
export const EXPORTER_DIR = "/etc/pgbouncer-exporter";
export const EXPORTER_CONFIG_FILE = `${EXPORTER_DIR}/config.yaml`;
/** The CA that verifies the pooler's certificate. */
export const EXPORTER_CA_FILE = `${EXPORTER_DIR}/pooler-ca.crt`;
/** nb_monitor's password, URL-encoded (it goes into the DSN), where it comes as a file (Docker). */
export const EXPORTER_PASSWORD_FILE = `${EXPORTER_DIR}/password`;
export { PGBOUNCER_EXPORTER_PORT };

/** The exporter's config in a container: on every address of the container, the pooler at `poolerHost` (a name its certificate carries). */
export function containerExporterYaml(poolerHost: string): string {
  return pgbouncerExporterYaml({ listenHost: "0.0.0.0", listenPort: PGBOUNCER_EXPORTER_PORT, pooler: { host: poolerHost, port: POOLER_PORT }, caFile: EXPORTER_CA_FILE });
}

/** The exporter's command; nb_monitor's password is already in the variable its config names. */
const EXEC = `exec pgbouncer-exporter --config=${EXPORTER_CONFIG_FILE} --log-level=WARNING`;

/** Docker: the files are uploaded; the password goes from its file into the variable, so `docker inspect` never shows it. */
export const DOCKER_EXPORTER_START = `set -eu\n${PGBOUNCER_EXPORTER_PASSWORD_VARIABLE}="$(cat ${EXPORTER_PASSWORD_FILE})"\nexport ${PGBOUNCER_EXPORTER_PASSWORD_VARIABLE}\n${EXEC}`;

/** ECS: the config and the CA come as plain environment (no secret in them) and are written at start; the password is ECS's secret. */
export const ECS_EXPORTER_CONFIG_VARIABLE = "PGBOUNCER_EXPORTER_CONFIG";
export const ECS_EXPORTER_CA_VARIABLE = "PGBOUNCER_EXPORTER_POOLER_CA";
export const ECS_EXPORTER_START = [
  "umask 077",
  `printf '%s' "$${ECS_EXPORTER_CONFIG_VARIABLE}" > ${EXPORTER_CONFIG_FILE}`,
  `printf '%s' "$${ECS_EXPORTER_CA_VARIABLE}" > ${EXPORTER_CA_FILE}`,
  EXEC,
].join(" && ");
