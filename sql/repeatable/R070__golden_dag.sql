-- The audited tables' side of the GoldenDAG audit trail that nb_owner keeps: TRUNCATE refused on
-- every audited table (list below = schema/tables.ts, `audited: true`), since a TRUNCATE changes
-- rows without a trail entry. The trail itself (golden_dag_audit, its chain, the audit trigger
-- golden_dag on these tables, the sealer, verify_golden_dag(), archiving) belongs to nb_audit and
-- is installed by the platform's administrator after the bundles: sql/admin/golden_dag_trail.sql.
-- Re-runnable.

CREATE OR REPLACE FUNCTION neuralblitz.refuse_unaudited_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'TRUNCATE of audited table %.% would leave no audit entries', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege', HINT = 'Use DELETE: each deleted row is written to the GoldenDAG audit trail.';
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.refuse_unaudited_truncate() FROM PUBLIC;

DO $$
DECLARE
  t text;
BEGIN
  -- Audited tables: schema/tables.ts, audited: true (a test holds the two lists together).
  FOREACH t IN ARRAY ARRAY['users', 'api_keys', 'partner_configs', 'quantum_neurons', 'reality_networks',
                           'reality_nodes', 'consciousness_records', 'monitoring_alerts'] LOOP
    EXECUTE format('CREATE OR REPLACE TRIGGER golden_dag_refuse_truncate BEFORE TRUNCATE ON neuralblitz.%I
                      FOR EACH STATEMENT EXECUTE FUNCTION neuralblitz.refuse_unaudited_truncate()', t);
  END LOOP;
END
$$;
