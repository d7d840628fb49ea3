-- Creates metrics_hourly, the hourly roll-up of metrics (count, sum, min, max, avg per metric,
-- source and hour), refreshed CONCURRENTLY by maintenance; the unique index is what allows that.

CREATE MATERIALIZED VIEW neuralblitz.metrics_hourly AS
SELECT name,
       source,
       date_trunc('hour', ts) AS hour,
       count(*)               AS samples,
       sum(value)             AS total,
       min(value)             AS min_value,
       max(value)             AS max_value,
       avg(value)             AS avg_value
  FROM neuralblitz.metrics
 GROUP BY name, source, date_trunc('hour', ts)
WITH NO DATA;
CREATE UNIQUE INDEX metrics_hourly_key ON neuralblitz.metrics_hourly (name, source, hour);
-- Dashboards read one metric's recent hours: WHERE name = $1 AND hour >= $2.
CREATE INDEX metrics_hourly_name_hour_idx ON neuralblitz.metrics_hourly (name, hour);
REFRESH MATERIALIZED VIEW neuralblitz.metrics_hourly;
