-- Creates maintenance_runs: one row per run of run_maintenance() (by the scheduler, pg_cron or a
-- container, or `nbdb maintain`),
-- so operators and `nbdb status` can see when maintenance last ran and what it did.

CREATE TABLE neuralblitz.maintenance_runs (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source              text NOT NULL,
  started_at          timestamptz NOT NULL,
  finished_at         timestamptz NOT NULL,
  partitions_created  integer NOT NULL,
  partitions_retired  integer NOT NULL,
  rows_moved          bigint NOT NULL,
  tables_analyzed     text[] NOT NULL,
  CONSTRAINT maintenance_runs_source CHECK (source IN ('scheduler', 'nbdb', 'manual')),
  CONSTRAINT maintenance_runs_order CHECK (finished_at >= started_at)
);
-- "When did maintenance last run": ORDER BY started_at DESC LIMIT 1.
CREATE INDEX maintenance_runs_started_at_idx ON neuralblitz.maintenance_runs (started_at);
