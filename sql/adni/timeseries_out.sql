-- timeseries_out: empty. ADNIMERGE visits are months apart; the longitudinal signal is in the per-visit samples,
-- not in hourly bins. The relation exists because the builder writes timeseries.parquet for every source.
-- Depends on: nothing.

CREATE OR REPLACE TABLE timeseries_out AS
SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS INTEGER) AS hour, CAST(NULL AS VARCHAR) AS variable,
       CAST(NULL AS DOUBLE) AS value
WHERE false;
