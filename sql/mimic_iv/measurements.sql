-- measurements: every lab and vital of variable_map charted inside a sample's observation window.
-- Depends on: cohort, measurement_events.
--
-- Joined by subject_id and time, not by hadm_id: about a third of labevents rows have a NULL hadm_id
-- (outpatient / ED draws filed before the admission record), and chartevents' stay linkage is irrelevant once
-- the window is a time interval. Window = [window_start_time, prediction_time], both ends inclusive; nothing
-- charted after prediction_time can enter (the audit re-checks this on the outputs).
-- Materialised once so structured and timeseries outputs do not rescan the events.

CREATE OR REPLACE TABLE measurements AS
SELECT c.sample_id, e.charttime, e.position, e.variable, e.value
FROM measurement_events AS e
JOIN cohort AS c
  ON c.subject_id = e.subject_id
 AND e.charttime >= c.window_start_time
 AND e.charttime <= c.prediction_time;
