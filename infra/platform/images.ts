// Container images, pinned to exact versions so that an `up` never changes a server by itself.
// Bump them deliberately, one stack at a time (dev first).
import { PostgresVersion } from "../config";

/**
 * The official image, whose entrypoint initialises the primary; the replicas run the shared
 * bootstrap instead (no Bitnami: its versioned tags were frozen under bitnamilegacy in 2025).
 */
export const POSTGRES_IMAGES: Readonly<Record<PostgresVersion, string>> = {
  "15": "postgres:15.17-bookworm",
  "16": "postgres:16.13-bookworm",
  "17": "postgres:17.9-bookworm",
};

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
