-- Settings of the neuralblitz schema and database that every later bundle relies on: PUBLIC gets
-- nothing by default, and sessions compute dates in UTC (day/month partition bounds depend on it).

COMMENT ON SCHEMA neuralblitz IS
  'NeuralBlitz: every project object. Owned by nb_owner; changed only through the SQL bundles in sql/.';

REVOKE CREATE, USAGE ON SCHEMA neuralblitz FROM PUBLIC;

-- Functions and types are executable/usable by PUBLIC by default; ours are granted by name instead.
ALTER DEFAULT PRIVILEGES FOR ROLE nb_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE nb_owner REVOKE USAGE ON TYPES FROM PUBLIC;

DO $$
BEGIN
  EXECUTE pg_catalog.format('ALTER DATABASE %I SET timezone = %L', pg_catalog.current_database(), 'UTC');
END
$$;
