-- measurement_events: the rows of the three events tables that can feed labs and vitals, read once. Depends on:
-- lab, vitalperiodic, vitalaperiodic, variable_map. The one scan of the events tables (vitalPeriodic alone is
-- 146,671,642 rows in eICU-CRD v2.0); shared by every task: it does not depend on the cohort.
--
-- A view: a single task's `measurements` join streams through it. `cohort build --task all` materialises it once
-- to Parquet in the build's work folder and every task joins that instead of the csv.gz files, so the events
-- tables are parsed once whatever the number of tasks (docs/performance.md). Which modalities a task allows is
-- applied in measurements.sql, so the extract is the same for every task.
-- One row per raw row, told apart by source_table; offset_min = minutes from the unit admission of the row's own
-- stay (patientunitstayid).
-- - lab: mapped to variable_map already (few rows, one value each): only numeric results (labresult) of mapped
--   labnames inside the physiological bounds; a result counts from when it was known, the later of labresultoffset
--   and labresultrevisedoffset (the table holds the revised value; a revision after prediction time would leak it).
-- - vitalperiodic / vitalaperiodic: kept wide, one column per sign, as in the raw table. Unpivoting to one row per
--   value here would write ~5 rows per raw row (most of them outside every window) and join each to variable_map:
--   measured at 20k simulated subjects, that extract cost 3x a whole single-task build, while the wide copy costs
--   about one CSV parse. measurements.sql unpivots and maps the rows inside a window.

CREATE OR REPLACE VIEW measurement_events AS
SELECT l.patientunitstayid,
       greatest(l.labresultoffset, coalesce(l.labresultrevisedoffset, l.labresultoffset)) AS offset_min,
       'lab' AS source_table, vm.modality, vm.position, vm.variable, l.labresult AS value
FROM lab AS l
JOIN variable_map AS vm ON vm.source_table = 'lab' AND vm.item = l.labname
WHERE l.labresult IS NOT NULL AND l.labresult BETWEEN vm.valid_low AND vm.valid_high
UNION ALL BY NAME
SELECT v.patientunitstayid, v.observationoffset AS offset_min, 'vitalperiodic' AS source_table,
       v.* EXCLUDE (vitalperiodicid, patientunitstayid, observationoffset)
FROM vitalperiodic AS v
UNION ALL BY NAME
SELECT v.patientunitstayid, v.observationoffset AS offset_min, 'vitalaperiodic' AS source_table,
       v.* EXCLUDE (vitalaperiodicid, patientunitstayid, observationoffset)
FROM vitalaperiodic AS v;
