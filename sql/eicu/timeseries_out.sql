-- timeseries_out: hourly means of the vital signs (the vitals modality), hour 0 = first hour of the window.
-- Depends on: cohort, measurements.
--
-- Bins are [window start + h, window start + h + 1 h) on the offset clock; a bin holds only values at or before
-- prediction time because measurements already stops there. Labs are not binned: they are the labs modality's
-- aggregates (a timeseries-kind modality takes every variable of timeseries.parquet). Empty bins are not written.

CREATE OR REPLACE TABLE timeseries_out AS
SELECT
    m.sample_id,
    CAST((m.offset_min - c._window_start_offset) // 60 AS INTEGER) AS hour,
    m.variable,
    fsum(m.value) / count(*) AS value
FROM measurements AS m
JOIN cohort AS c USING (sample_id)
WHERE m.modality = 'vitals' AND {{ allow_vitals }}
GROUP BY ALL;
