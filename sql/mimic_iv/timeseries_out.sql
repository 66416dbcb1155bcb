-- timeseries_out: hourly means of the same variables, hour 0 = first hour of the observation window.
-- Depends on: cohort, measurements.
--
-- Bins are [window_start + h, window_start + h + 1 h); a bin holds only measurements <= prediction_time because
-- measurements already stops there. Empty bins are not written (the featurizer decides how to fill them).

CREATE OR REPLACE TABLE timeseries_out AS
SELECT
    m.sample_id,
    CAST((epoch_us(m.charttime) - epoch_us(c.window_start_time)) // 3600000000 AS INTEGER) AS hour,
    m.variable,
    fsum(m.value) / count(*) AS value
FROM measurements AS m
JOIN cohort AS c USING (sample_id)
GROUP BY ALL;
