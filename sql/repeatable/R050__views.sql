-- Creates the reporting views. security_invoker: they run with the caller's rights, so the
-- row-level security of the tables beneath applies (a user sees their own activity only).
-- Re-runnable: CREATE OR REPLACE (columns may be added at the end, never removed or renamed here).

CREATE OR REPLACE VIEW neuralblitz.user_activity_view WITH (security_invoker = true) AS
SELECT u.id AS user_id,
       u.username,
       u.status,
       u.last_login_at,
       (SELECT count(*) FROM neuralblitz.api_keys k
         WHERE k.user_id = u.id AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS active_api_keys,
       (SELECT max(k.last_used_at) FROM neuralblitz.api_keys k WHERE k.user_id = u.id) AS last_api_use_at,
       (SELECT count(*) FROM neuralblitz.reality_networks n WHERE n.user_id = u.id) AS networks,
       (SELECT count(*) FROM neuralblitz.quantum_neurons q WHERE q.user_id = u.id) AS neurons,
       (SELECT max(c.recorded_at) FROM neuralblitz.consciousness_records c WHERE c.user_id = u.id) AS last_consciousness_record_at,
       GREATEST(u.last_login_at,
                (SELECT max(k.last_used_at) FROM neuralblitz.api_keys k WHERE k.user_id = u.id)) AS last_active_at
  FROM neuralblitz.users u
 WHERE u.deleted_at IS NULL;

CREATE OR REPLACE VIEW neuralblitz.consciousness_metrics_view WITH (security_invoker = true) AS
SELECT c.user_id,
       c.subject_kind,
       c.subject_id,
       count(*)                                            AS records,
       min(c.level)                                        AS min_level,
       max(c.level)                                        AS max_level,
       round(avg(c.level), 3)                              AS avg_level,
       (array_agg(c.stage ORDER BY c.recorded_at DESC))[1] AS current_stage,
       (array_agg(c.level ORDER BY c.recorded_at DESC))[1] AS current_level,
       min(c.recorded_at)                                  AS first_recorded_at,
       max(c.recorded_at)                                  AS last_recorded_at
  FROM neuralblitz.consciousness_records c
 GROUP BY c.user_id, c.subject_kind, c.subject_id;

CREATE OR REPLACE VIEW neuralblitz.reality_status_view WITH (security_invoker = true) AS
SELECT n.id AS network_id,
       n.user_id,
       n.name,
       n.status,
       n.dimensions,
       count(r.id)                                                              AS nodes,
       count(r.id) FILTER (WHERE r.status = 'online')                           AS nodes_online,
       count(r.id) FILTER (WHERE r.status IN ('degraded', 'offline') OR r.health < 0.5) AS nodes_unhealthy,
       round(avg(r.health)::numeric, 3)                                         AS avg_health,
       max(r.last_heartbeat)                                                    AS last_heartbeat
  FROM neuralblitz.reality_networks n
  LEFT JOIN neuralblitz.reality_nodes r ON r.network_id = n.id AND r.user_id = n.user_id
 GROUP BY n.id, n.user_id, n.name, n.status, n.dimensions;

CREATE OR REPLACE FUNCTION neuralblitz.refresh_rollups() RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- CONCURRENTLY: readers keep the old contents while the new ones are computed.
  REFRESH MATERIALIZED VIEW CONCURRENTLY neuralblitz.metrics_hourly;
END
$$;
REVOKE EXECUTE ON FUNCTION neuralblitz.refresh_rollups() FROM PUBLIC;
