-- measurements: every lab and vital sign of variable_map inside a sample's observation window.
-- Depends on: cohort, measurement_events, variable_map, macros. Parameters: allow_labs, allow_vitals.
--
-- Rows are joined by patientunitstayid: eICU offsets are relative to the unit admission of their own stay, so a row
-- of another stay (even of the same hospital stay) is on another clock. Window = [_window_start_offset,
-- _prediction_offset] in minutes, both ends inclusive, on measurement_events' offset_min (for a lab, when its
-- result was known); nothing after prediction time can enter (the audits re-check the outputs on the timestamp
-- clock). Labs come mapped from measurement_events; the vital-sign rows inside a window are unpivoted here (one row
-- per non-NULL sign), matched to variable_map by column name and kept inside its physiological bounds.
-- Materialised once so structured and timeseries outputs do not rescan the events.

CREATE OR REPLACE TABLE measurements AS
WITH labs AS (
    SELECT c.sample_id, c.index_time, e.offset_min, e.modality, e.position, e.variable, e.value
    FROM measurement_events AS e
    JOIN cohort AS c
      ON c.patientunitstayid = e.patientunitstayid
     AND e.offset_min BETWEEN c._window_start_offset AND c._prediction_offset
    WHERE e.source_table = 'lab' AND {{ allow_labs }}
),
vitals_wide AS (
    SELECT c.sample_id, c.index_time, e.* EXCLUDE (patientunitstayid, modality, position, variable, value)
    FROM measurement_events AS e
    JOIN cohort AS c
      ON c.patientunitstayid = e.patientunitstayid
     AND e.offset_min BETWEEN c._window_start_offset AND c._prediction_offset
    WHERE e.source_table <> 'lab' AND {{ allow_vitals }}
),
vitals_long AS (
    UNPIVOT vitals_wide ON COLUMNS(* EXCLUDE (sample_id, index_time, offset_min, source_table))
    INTO NAME item VALUE reading
),
vitals AS (
    SELECT e.sample_id, e.index_time, e.offset_min, vm.modality, vm.position, vm.variable, e.reading AS value
    FROM vitals_long AS e
    JOIN variable_map AS vm ON vm.source_table = e.source_table AND vm.item = e.item
    WHERE e.reading BETWEEN vm.valid_low AND vm.valid_high
)
SELECT sample_id, offset_min, eicu_at(index_time, offset_min) AS charttime, modality, position, variable,
       CAST(value AS DOUBLE) AS value
FROM (SELECT * FROM labs UNION ALL SELECT * FROM vitals);
