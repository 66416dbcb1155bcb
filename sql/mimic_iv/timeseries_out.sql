-- timeseries_out: hourly means of the same variables, hour 0 = first hour of the observation window.
-- Depends on: measurements, sample_keys, variables.
--
-- Bins are [window_start + h, window_start + h + 1 h); a bin holds only measurements <= prediction_time because
-- measurements already stops there. Empty bins are not written (the featurizer decides how to fill them).
-- The bins are a table of integer keys; timeseries_out, a view, names them as the builder writes it, sorted by
-- those keys (_row_order_*, cohort/build.py), whose order is that of (sample_id, hour, variable).

CREATE OR REPLACE TABLE timeseries_bins AS
SELECT sample_key, hour, variable_key, fsum(value) / count(*) AS value
FROM measurements
GROUP BY sample_key, hour, variable_key;

CREATE OR REPLACE VIEW timeseries_out AS
SELECT k.sample_id, b.hour, v.variable, b.value,
       b.sample_key AS _row_order_1, b.hour AS _row_order_2, b.variable_key AS _row_order_3
FROM timeseries_bins AS b
JOIN sample_keys AS k USING (sample_key)
JOIN variables AS v USING (variable_key);
