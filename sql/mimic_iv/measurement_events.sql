-- measurement_events: every lab and vital of variable_map in the raw events tables, unit-unified and bounded.
-- Depends on: labevents, chartevents, variable_map, variables. The one scan of the two events tables (about 590M
-- rows in MIMIC-IV 3.1); shared by every task: it does not depend on the cohort.
--
-- A view: a single task's `measurements` join streams through it. `cohort build --task all` materialises it
-- once to Parquet in the build's work folder and every task reads that instead of the csv.gz files, so the
-- events tables are parsed once whatever the number of tasks (docs/performance.md).
-- Units are unified (temperature to Celsius) and values outside physiological bounds are dropped as charting
-- errors. subject_id, not hadm_id, is kept: about a third of labevents rows have a NULL hadm_id (outpatient / ED
-- draws filed before the admission record); measurements joins by subject and time.
--
-- Cost (docs/performance.md): each events row is parsed, then meets the ~20-row map in a hash join on itemid
-- alone, which drops the rows of every other item (most of chartevents in the real release) right after
-- parsing. The bounds are a CASE on the joined row, not a WHERE on both sides: DuckDB would make such a WHERE a
-- pair of range conditions inside the join, whose slow path cost as much again as the parse. Rows carry
-- variable_key (variables), not the name.

CREATE OR REPLACE VIEW measurement_events AS
WITH map AS (
    SELECT m.source_table, m.itemid, v.variable_key, m.scale, m.shift,
           CAST(m.valid_low AS DOUBLE) AS valid_low, CAST(m.valid_high AS DOUBLE) AS valid_high
    FROM variable_map AS m
    JOIN variables AS v USING (variable)
),
events AS (
    SELECT l.subject_id, l.charttime, vm.variable_key, l.valuenum * vm.scale + vm.shift AS value,
           vm.valid_low, vm.valid_high
    FROM labevents AS l
    JOIN map AS vm ON vm.source_table = 'labevents' AND vm.itemid = l.itemid
    UNION ALL
    SELECT e.subject_id, e.charttime, vm.variable_key, e.valuenum * vm.scale + vm.shift AS value,
           vm.valid_low, vm.valid_high
    FROM chartevents AS e
    JOIN map AS vm ON vm.source_table = 'chartevents' AND vm.itemid = e.itemid
),
bounded AS (
    -- NULL for a NULL valuenum too
    SELECT subject_id, charttime, variable_key,
           CASE WHEN value BETWEEN valid_low AND valid_high THEN value END AS value
    FROM events
)
SELECT subject_id, charttime, variable_key, value FROM bounded WHERE value IS NOT NULL;
