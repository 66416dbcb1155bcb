-- variable_map: the ONE place that lists which itemids feed structured.parquet and timeseries.parquet.
-- Depends on: nothing (parameter dataset_major: 2 for v2.x, 3 for v3.x).
--
-- Labs (hosp.labevents, d_labitems itemids): the 20 tests that make up the basic metabolic panel, the complete
-- blood count, liver/coagulation markers and lactate -- ordered for nearly every inpatient and the inputs of
-- SOFA/SAPS-like severity scores. Vitals (icu.chartevents, MetaVision d_items itemids): heart rate, systolic /
-- diastolic / mean blood pressure (non-invasive cuff and arterial line merged: same physiological quantity),
-- respiratory rate (set and total), SpO2, temperature (Fahrenheit converted to Celsius), the three GCS components
-- and weight (admission and daily).
-- valid_low / valid_high drop charting errors (e.g. a mean arterial pressure of 801 in the demo) rather than
-- real extremes; bounds are physiological limits, deliberately wide.
-- `majors` lists the MIMIC-IV major releases in which the itemid means this variable. The itemids below are the
-- same in v2.2 and v3.1 (MetaVision items and d_labitems ids were not renumbered); a release that renumbers one
-- gets a second row with its own `majors`, so version differences stay in this file only.

CREATE OR REPLACE TABLE variable_map AS
SELECT position, source_table, itemid, variable, scale, shift, valid_low, valid_high
FROM (VALUES
    -- position, table, itemid, variable, value * scale + shift, valid range, majors
    ( 1, 'labevents',   51222, 'hemoglobin',      1.0, 0.0,    0.0,   30.0, '2,3'),
    ( 2, 'labevents',   51221, 'hematocrit',      1.0, 0.0,    0.0,  100.0, '2,3'),
    ( 3, 'labevents',   51301, 'wbc',             1.0, 0.0,    0.0, 1000.0, '2,3'),
    ( 4, 'labevents',   51265, 'platelets',       1.0, 0.0,    0.0, 3000.0, '2,3'),
    ( 5, 'labevents',   50983, 'sodium',          1.0, 0.0,   50.0,  250.0, '2,3'),
    ( 6, 'labevents',   50971, 'potassium',       1.0, 0.0,    0.5,   15.0, '2,3'),
    ( 7, 'labevents',   50902, 'chloride',        1.0, 0.0,   40.0,  200.0, '2,3'),
    ( 8, 'labevents',   50882, 'bicarbonate',     1.0, 0.0,    0.0,   70.0, '2,3'),
    ( 9, 'labevents',   51006, 'bun',             1.0, 0.0,    0.0,  300.0, '2,3'),
    (10, 'labevents',   50912, 'creatinine',      1.0, 0.0,    0.0,   40.0, '2,3'),
    (11, 'labevents',   50931, 'glucose',         1.0, 0.0,    0.0, 3000.0, '2,3'),
    (12, 'labevents',   50893, 'calcium',         1.0, 0.0,    0.0,   30.0, '2,3'),
    (13, 'labevents',   50960, 'magnesium',       1.0, 0.0,    0.0,   20.0, '2,3'),
    (14, 'labevents',   50970, 'phosphate',       1.0, 0.0,    0.0,   30.0, '2,3'),
    (15, 'labevents',   50868, 'anion_gap',       1.0, 0.0,  -20.0,   80.0, '2,3'),
    (16, 'labevents',   50813, 'lactate',         1.0, 0.0,    0.0,   40.0, '2,3'),
    (17, 'labevents',   50885, 'bilirubin_total', 1.0, 0.0,    0.0,  100.0, '2,3'),
    (18, 'labevents',   50862, 'albumin',         1.0, 0.0,    0.0,   10.0, '2,3'),
    (19, 'labevents',   51237, 'inr',             1.0, 0.0,    0.0,   30.0, '2,3'),
    (20, 'labevents',   51275, 'ptt',             1.0, 0.0,    0.0,  300.0, '2,3'),
    (21, 'chartevents', 220045, 'heart_rate',     1.0, 0.0,    0.0,  300.0, '2,3'),
    (22, 'chartevents', 220179, 'sbp',            1.0, 0.0,    0.0,  400.0, '2,3'),
    (22, 'chartevents', 220050, 'sbp',            1.0, 0.0,    0.0,  400.0, '2,3'),
    (23, 'chartevents', 220180, 'dbp',            1.0, 0.0,    0.0,  300.0, '2,3'),
    (23, 'chartevents', 220051, 'dbp',            1.0, 0.0,    0.0,  300.0, '2,3'),
    (24, 'chartevents', 220181, 'mbp',            1.0, 0.0,    0.0,  300.0, '2,3'),
    (24, 'chartevents', 220052, 'mbp',            1.0, 0.0,    0.0,  300.0, '2,3'),
    (25, 'chartevents', 220210, 'resp_rate',      1.0, 0.0,    0.0,  100.0, '2,3'),
    (25, 'chartevents', 224690, 'resp_rate',      1.0, 0.0,    0.0,  100.0, '2,3'),
    (26, 'chartevents', 220277, 'spo2',           1.0, 0.0,    0.0,  100.0, '2,3'),
    -- Fahrenheit -> Celsius: (F - 32) * 5/9 = F * 5/9 - 160/9
    (27, 'chartevents', 223761, 'temperature',    5.0 / 9.0, -160.0 / 9.0, 25.0, 45.0, '2,3'),
    (27, 'chartevents', 223762, 'temperature',    1.0, 0.0,   25.0,   45.0, '2,3'),
    (28, 'chartevents', 220739, 'gcs_eye',        1.0, 0.0,    1.0,    4.0, '2,3'),
    (29, 'chartevents', 223900, 'gcs_verbal',     1.0, 0.0,    1.0,    5.0, '2,3'),
    (30, 'chartevents', 223901, 'gcs_motor',      1.0, 0.0,    1.0,    6.0, '2,3'),
    (31, 'chartevents', 226512, 'weight',         1.0, 0.0,    0.5,  500.0, '2,3'),
    (31, 'chartevents', 224639, 'weight',         1.0, 0.0,    0.5,  500.0, '2,3')
) AS t(position, source_table, itemid, variable, scale, shift, valid_low, valid_high, majors)
WHERE list_contains(string_split(majors, ','), CAST({{ dataset_major }} AS VARCHAR));
