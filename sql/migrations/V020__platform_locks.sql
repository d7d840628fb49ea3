-- Creates platform_locks: one row per lock the platform's own jobs take (deploy, maintenance, sealer).
-- Row locks on a table nobody but nb_owner may touch, so nb_app can never take or hold them (it can take any advisory lock).
CREATE TABLE IF NOT EXISTS neuralblitz.platform_locks (
  name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
  purpose text NOT NULL
);
COMMENT ON TABLE neuralblitz.platform_locks IS 'Row locks of the platform''s own jobs (neuralblitz.take_platform_lock); no privilege for any application role.';
REVOKE ALL ON neuralblitz.platform_locks FROM PUBLIC;
INSERT INTO neuralblitz.platform_locks (name, purpose) VALUES
  ('deploy', 'one deploy of the SQL bundles at a time (infra/bundles/lock.ts)'),
  ('maintenance', 'one partition maintenance at a time (run_partition_maintenance)'),
  ('sealer', 'one GoldenDAG sealer at a time (seal_golden_dag)')
ON CONFLICT (name) DO NOTHING;
