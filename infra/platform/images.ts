// Container images, pinned to exact versions so that an `up` never changes a server by itself.
// Bump them deliberately, one stack at a time (dev first). These are the defaults, by tag: a tag can be
// pushed again, so two hosts may run different builds of one tag. Stacks pin digests in their config
// (`images.postgres`, `images.pgbouncer` as `<name>:<tag>@sha256:<digest>`, the tag kept for people);
// protected stacks must (infra/config.ts). docs/platforms.md says how to look a digest up.
import { createHash } from "crypto";
import * as path from "path";
import { PostgresVersion } from "../config";
import { PGBOUNCER_EXPORTER_IMAGE_DRIVER, PGBOUNCER_EXPORTER_IMPORT_CHECK, PGBOUNCER_EXPORTER_REQUIREMENTS, PGBOUNCER_EXPORTER_VERSION } from "../topology/monitoring";

/**
 * The official image, whose entrypoint initialises the primary; the replicas run the shared
 * bootstrap instead (no Bitnami: its versioned tags were frozen under bitnamilegacy in 2025).
 */
export const POSTGRES_IMAGES: Readonly<Record<PostgresVersion, string>> = {
  "15": "postgres:15.17-bookworm",
  "16": "postgres:16.13-bookworm",
  "17": "postgres:17.9-bookworm",
};

/**
 * What the Docker platform adds to the official image, from Debian's archive (the PostgreSQL
 * project's apt repository the image already lists carries every major's): pg_cron for the
 * scheduled jobs, pgBackRest for WAL archiving and backups, and cron to run the backup schedule.
 */
export function postgresImagePackages(major: PostgresVersion): string[] {
  return [`postgresql-${major}-cron`, "pgbackrest", "cron"];
}

/** The build context of that image (its Dockerfile takes BASE_IMAGE and PACKAGES). */
export const POSTGRES_IMAGE_CONTEXT = path.join(__dirname, "postgresImage");

/**
 * The image the Docker platform builds from `base` (the stack's pinned postgres image): its local
 * name carries the base's tag and a hash of the base reference and packages, so stacks on one host
 * that pin different builds get different images.
 */
export function postgresImageBuild(base: string, major: PostgresVersion): { imageName: string; args: { BASE_IMAGE: string; PACKAGES: string } } {
  const packages = postgresImagePackages(major).join(" ");
  const hash = createHash("sha256").update(`${base}\n${packages}`).digest("hex").slice(0, 12);
  return { imageName: `neuralblitz-postgres:${imageTag(base)}-${hash}`, args: { BASE_IMAGE: base, PACKAGES: packages } };
}

/** The uid of `postgres` in the official Debian-based image. */
export const POSTGRES_IMAGE_UID = "999";

/**
 * edoburu/pgbouncer: maintained, small (Alpine), rebuilt on base-image updates, ships pg_isready.
 * The same minor version as the local stack's (PGBOUNCER_VERSION in infra/topology/pgbouncerVersion.ts;
 * a test checks they agree), so prepared statements and startup parameters behave alike everywhere.
 */
export const PGBOUNCER_IMAGE = "edoburu/pgbouncer:v1.24.1-p1";
/** The uid the PgBouncer image runs as. */
export const PGBOUNCER_IMAGE_UID = "70";

/**
 * PostgreSQL's metrics exporter on Docker stacks: the project's image of the same version Debian 12
 * packages for the local stack (prometheus-postgres-exporter 0.11.1), so both run the same queries alike.
 */
export const POSTGRES_EXPORTER_IMAGE = "prometheuscommunity/postgres-exporter:v0.11.1";
/** The uid the exporter image runs as (nobody). */
export const POSTGRES_EXPORTER_IMAGE_UID = "65534";

/**
 * PgBouncer's metrics exporter on Docker and AWS stacks: an image the program builds (never pulled
 * by tag) from the official Python image of the local stack's Python (Debian 12's 3.11), with the
 * pins of infra/topology/monitoring.ts. A stack may run a reference of its own instead
 * (`images.pgbouncerExporter`, an image built from this context).
 */
export const PGBOUNCER_EXPORTER_BASE_IMAGE = "python:3.11-slim-bookworm";
export const PGBOUNCER_EXPORTER_IMAGE_CONTEXT = path.join(__dirname, "pgbouncerExporterImage");
/** The uid the built exporter image runs as (nobody). */
export const PGBOUNCER_EXPORTER_IMAGE_UID = "65534";

/** The exporter's local image name on Docker hosts (AWS pushes to the stack's ECR repository). */
export const PGBOUNCER_EXPORTER_LOCAL_REPOSITORY = "neuralblitz-pgbouncer-exporter";

/**
 * The exporter's image: its build arguments, and its tag, which carries the exporter's version and a
 * hash of every argument, so another set of pins is another image, never a stale one of the same name.
 */
export function pgbouncerExporterImageBuild(): { tag: string; args: { BASE_IMAGE: string; REQUIREMENTS: string; DRIVER: string; IMPORT_CHECK: string } } {
  const args = {
    BASE_IMAGE: PGBOUNCER_EXPORTER_BASE_IMAGE,
    REQUIREMENTS: PGBOUNCER_EXPORTER_REQUIREMENTS.join(" "),
    DRIVER: PGBOUNCER_EXPORTER_IMAGE_DRIVER,
    IMPORT_CHECK: PGBOUNCER_EXPORTER_IMPORT_CHECK,
  };
  const hash = createHash("sha256").update(JSON.stringify(args)).digest("hex").slice(0, 12);
  return { tag: `${PGBOUNCER_EXPORTER_VERSION}-${hash}`, args };
}

/** `<name>:<tag>@sha256:<64 hex>`: what a pinned image reference looks like. */
export const PINNED_IMAGE = /^[a-z0-9]+([._\/-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}@sha256:[0-9a-f]{64}$/;
/** `<name>:<tag>`, without a digest. */
export const TAGGED_IMAGE = /^[a-z0-9]+([._\/-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** The tag of an image reference: "15.17-bookworm" of "postgres:15.17-bookworm@sha256:…". */
export function imageTag(ref: string): string {
  const withoutDigest = ref.split("@")[0];
  return withoutDigest.slice(withoutDigest.lastIndexOf(":") + 1);
}
