-- measurement_events: every lab and vital of variable_map in the raw events tables, unit-unified and bounded.
-- Depends on: labevents, chartevents, variable_map. The one scan of the two events tables (about 590M rows in
-- MIMIC-IV 3.1); shared by every task: it does not depend on the cohort.
--
-- A view: a single task's `measurements` join streams through it. `cohort build --task all` materialises it
-- once to Parquet in the build's work folder and every task reads that instead of the csv.gz files, so the
-- events tables are parsed once whatever the number of tasks (docs/performance.md).
-- Units are unified (temperature to Celsius) and values outside physiological bounds are dropped as charting
-- errors. subject_id, not hadm_id, is kept: about a third of labevents rows have a NULL hadm_id (outpatient / ED
-- draws filed before the admission record); measurements joins by subject and time.

CREATE OR REPLACE VIEW measurement_events AS
WITH labs AS (
    SELECT l.subject_id, l.charttime, vm.position, vm.variable,
           l.valuenum * vm.scale + vm.shift AS value, vm.valid_low, vm.valid_high
    FROM labevents AS l
    JOIN variable_map AS vm ON vm.source_table = 'labevents' AND vm.itemid = l.itemid
    WHERE l.valuenum IS NOT NULL
),
vitals AS (
    SELECT e.subject_id, e.charttime, vm.position, vm.variable,
           e.valuenum * vm.scale + vm.shift AS value, vm.valid_low, vm.valid_high
    FROM chartevents AS e
    JOIN variable_map AS vm ON vm.source_table = 'chartevents' AND vm.itemid = e.itemid
    WHERE e.valuenum IS NOT NULL
)
SELECT subject_id, charttime, position, variable, value
FROM (SELECT * FROM labs UNION ALL SELECT * FROM vitals)
WHERE value BETWEEN valid_low AND valid_high;
