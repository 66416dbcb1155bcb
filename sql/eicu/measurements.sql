-- measurements: every lab and vital sign of variable_map inside a sample's observation window.
-- Depends on: cohort, lab, vitalperiodic, vitalaperiodic, variable_map. Parameters: allow_labs, allow_vitals. The one scan of the three events tables.
--
-- Rows are joined by patientunitstayid: eICU offsets are relative to the unit admission of their own stay, so a row
-- of another stay (even of the same hospital stay) is on another clock. Window = [_window_start_offset,
-- _prediction_offset] in minutes, both ends inclusive; nothing after prediction time can enter (the audits re-check
-- the outputs on the timestamp clock).
-- A lab result counts from when it was known: the later of labresultoffset and labresultrevisedoffset (the table
-- holds the revised value; a revision after prediction time would leak it). Only numeric results (labresult) are
-- used; values outside variable_map's physiological bounds are dropped as charting errors.
-- Materialised once so structured and timeseries outputs do not rescan the raw files.

CREATE OR REPLACE TABLE measurements AS
WITH labs AS (
    SELECT c.sample_id, c.index_time,
           greatest(l.labresultoffset, coalesce(l.labresultrevisedoffset, l.labresultoffset)) AS offset_min,
           vm.modality, vm.position, vm.variable, l.labresult AS value, vm.valid_low, vm.valid_high,
           c._window_start_offset, c._prediction_offset
    FROM lab AS l
    JOIN cohort AS c ON c.patientunitstayid = l.patientunitstayid
    JOIN variable_map AS vm ON vm.source_table = 'lab' AND vm.item = l.labname
    WHERE {{ allow_labs }} AND l.labresult IS NOT NULL
),
periodic_wide AS (
    SELECT c.sample_id, c.index_time, v.observationoffset AS offset_min,
           v.* EXCLUDE (vitalperiodicid, patientunitstayid, observationoffset)
    FROM vitalperiodic AS v
    JOIN cohort AS c
      ON c.patientunitstayid = v.patientunitstayid
     AND v.observationoffset BETWEEN c._window_start_offset AND c._prediction_offset
    WHERE {{ allow_vitals }}
),
aperiodic_wide AS (
    SELECT c.sample_id, c.index_time, v.observationoffset AS offset_min,
           v.* EXCLUDE (vitalaperiodicid, patientunitstayid, observationoffset)
    FROM vitalaperiodic AS v
    JOIN cohort AS c
      ON c.patientunitstayid = v.patientunitstayid
     AND v.observationoffset BETWEEN c._window_start_offset AND c._prediction_offset
    WHERE {{ allow_vitals }}
),
vitals_long AS (
    SELECT sample_id, index_time, offset_min, 'vitalperiodic' AS source_table, item, value
    FROM (UNPIVOT periodic_wide ON COLUMNS(* EXCLUDE (sample_id, index_time, offset_min)) INTO NAME item VALUE value)
    UNION ALL
    SELECT sample_id, index_time, offset_min, 'vitalaperiodic', item, value
    FROM (UNPIVOT aperiodic_wide ON COLUMNS(* EXCLUDE (sample_id, index_time, offset_min)) INTO NAME item VALUE value)
),
vitals AS (
    SELECT e.sample_id, e.index_time, e.offset_min, vm.modality, vm.position, vm.variable, e.value,
           vm.valid_low, vm.valid_high
    FROM vitals_long AS e
    JOIN variable_map AS vm ON vm.source_table = e.source_table AND vm.item = e.item
)
SELECT sample_id, offset_min, eicu_at(index_time, offset_min) AS charttime, modality, position, variable,
       CAST(value AS DOUBLE) AS value
FROM labs
WHERE offset_min BETWEEN _window_start_offset AND _prediction_offset AND value BETWEEN valid_low AND valid_high
UNION ALL
SELECT sample_id, offset_min, eicu_at(index_time, offset_min), modality, position, variable, CAST(value AS DOUBLE)
FROM vitals
WHERE value BETWEEN valid_low AND valid_high;
