-- The bundle ledger: which SQL bundles this database holds (one row per bundle, compared with sql/
-- by `nbdb up`, `nbdb plan` and the SqlBundle resources) and the history of every application.
-- The applier writes both in the same transaction as the bundle itself (infra/bundles/ledger.ts).

CREATE TABLE neuralblitz.bundle_ledger (
  name         text        PRIMARY KEY,
  kind         text        NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
  checksum     text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
  applied_at   timestamptz NOT NULL,
  duration_ms  integer     NOT NULL CHECK (duration_ms >= 0),
  applied_by   text        NOT NULL,
  tool_version text        NOT NULL
);

COMMENT ON TABLE neuralblitz.bundle_ledger IS
  'One row per applied SQL bundle (file name without .sql): the checksum applied last. Written only by the bundle applier.';
COMMENT ON COLUMN neuralblitz.bundle_ledger.checksum IS 'sha256 of the bundle text (BOM removed, CRLF as LF), hex';
COMMENT ON COLUMN neuralblitz.bundle_ledger.applied_at IS 'when the application finished';
COMMENT ON COLUMN neuralblitz.bundle_ledger.applied_by IS 'the database login that applied it (session_user)';
COMMENT ON COLUMN neuralblitz.bundle_ledger.tool_version IS 'version of neuralblitz-db (package.json) that applied it';

CREATE TABLE neuralblitz.bundle_ledger_history (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text        NOT NULL,
  kind         text        NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
  checksum     text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
  applied_at   timestamptz NOT NULL,
  duration_ms  integer     NOT NULL CHECK (duration_ms >= 0),
  applied_by   text        NOT NULL,
  tool_version text        NOT NULL
);

COMMENT ON TABLE neuralblitz.bundle_ledger_history IS
  'Every application of a SQL bundle, including each re-application of a repeatable bundle. Append-only.';
