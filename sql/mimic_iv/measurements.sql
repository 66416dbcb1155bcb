-- measurements: every lab and vital of variable_map charted inside a sample's observation window.
-- Depends on: cohort, measurement_events.
--
-- Joined by subject_id and time, not by hadm_id: about a third of labevents rows have a NULL hadm_id
-- (outpatient / ED draws filed before the admission record), and chartevents' stay linkage is irrelevant once
-- the window is a time interval. Window = [window_start_time, prediction_time], both ends inclusive: nothing
-- charted after prediction_time can enter (the audit re-checks this on the outputs).
-- Materialised once so structured and timeseries outputs do not rescan the events.
--
-- sample_keys numbers the samples in sample_id order: the rows carry that 4-byte sample_key (and
-- variable_key) instead of strings, so the aggregates after this group and sort integers, and their row order
-- by the keys is the outputs' order by sample_id and variable name. hour = the row's hourly bin, counted from
-- window_start_time (timeseries_out).

CREATE OR REPLACE TABLE sample_keys AS
SELECT sample_id, CAST(row_number() OVER (ORDER BY sample_id) AS INTEGER) AS sample_key,
       subject_id, window_start_time, prediction_time
FROM cohort;

CREATE OR REPLACE TABLE measurements AS
SELECT
    k.sample_key,
    e.charttime,
    e.variable_key,
    e.value,
    CAST((epoch_us(e.charttime) - epoch_us(k.window_start_time)) // 3600000000 AS INTEGER) AS hour
FROM measurement_events AS e
JOIN sample_keys AS k
  ON k.subject_id = e.subject_id
 AND e.charttime >= k.window_start_time
 AND e.charttime <= k.prediction_time;
