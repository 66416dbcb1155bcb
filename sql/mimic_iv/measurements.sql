-- measurements: every lab and vital of variable_map charted inside a sample's observation window.
-- Depends on: cohort, labevents, chartevents, variable_map. The one scan of the two events tables.
--
-- Joined by subject_id and time, not by hadm_id: about a third of labevents rows have a NULL hadm_id
-- (outpatient / ED draws filed before the admission record), and chartevents' stay linkage is irrelevant once
-- the window is a time interval. Window = [window_start_time, prediction_time], both ends inclusive; nothing
-- charted after prediction_time can enter (the audit re-checks this on the outputs).
-- Units are unified (temperature to Celsius) and values outside physiological bounds are dropped as charting
-- errors. Materialised once so structured and timeseries outputs do not rescan the raw files.

CREATE OR REPLACE TABLE measurements AS
WITH labs AS (
    SELECT c.sample_id, l.charttime, vm.position, vm.variable,
           l.valuenum * vm.scale + vm.shift AS value, vm.valid_low, vm.valid_high
    FROM labevents AS l
    JOIN variable_map AS vm ON vm.source_table = 'labevents' AND vm.itemid = l.itemid
    JOIN cohort AS c
      ON c.subject_id = l.subject_id
     AND l.charttime >= c.window_start_time
     AND l.charttime <= c.prediction_time
    WHERE l.valuenum IS NOT NULL
),
vitals AS (
    SELECT c.sample_id, e.charttime, vm.position, vm.variable,
           e.valuenum * vm.scale + vm.shift AS value, vm.valid_low, vm.valid_high
    FROM chartevents AS e
    JOIN variable_map AS vm ON vm.source_table = 'chartevents' AND vm.itemid = e.itemid
    JOIN cohort AS c
      ON c.subject_id = e.subject_id
     AND e.charttime >= c.window_start_time
     AND e.charttime <= c.prediction_time
    WHERE e.valuenum IS NOT NULL
)
SELECT sample_id, charttime, position, variable, value
FROM (SELECT * FROM labs UNION ALL SELECT * FROM vitals)
WHERE value BETWEEN valid_low AND valid_high;
