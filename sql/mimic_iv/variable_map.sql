-- variable_map: the ONE place that lists which itemids feed structured.parquet and timeseries.parquet.
-- Depends on: nothing (parameters: dataset_major, 2 for v2.x and 3 for v3.x; variable_map_excluded, the
-- 'source_table:itemid' keys the dictionary check rejected for this download).
--
-- Labs (hosp.labevents, d_labitems itemids): the 20 tests that make up the basic metabolic panel, the complete
-- blood count, liver/coagulation markers and lactate -- ordered for nearly every inpatient and the inputs of
-- SOFA/SAPS-like severity scores. Vitals (icu.chartevents, MetaVision d_items itemids): heart rate, systolic /
-- diastolic / mean blood pressure (non-invasive cuff and arterial line merged: same physiological quantity),
-- respiratory rate (set and total), SpO2, temperature (Fahrenheit converted to Celsius), the three GCS components
-- and weight (admission and daily).
-- valid_low / valid_high drop charting errors (e.g. a mean arterial pressure of 801 in the demo) rather than
-- real extremes; bounds are physiological limits, deliberately wide.
-- `label` / `unit` are what the release's own dictionary must say about the itemid (hosp/d_labitems.label;
-- icu/d_items.label and .unitname) -- the v2.2 values, identical in the demo. Before any heavy SQL the build
-- checks every row against the download's dictionaries (cohort/preflight.py; rules in
-- cohort/releases/mimic_iv.yaml): an itemid that is missing or labelled otherwise is a warning in the manifest
-- and feeds nothing (its itemid is set to NULL below), so the variable stays a column of structured.parquet,
-- unobserved, instead of being filled from the wrong item. A unit is given where the conversion or the valid range
-- depends on it (temperature, weight).
-- `majors` lists the MIMIC-IV major releases in which the itemid means this variable; a release that renumbers
-- one gets a second row with its own `majors`, so version differences stay in this file only. No renumbering
-- of these itemids between v2.2 and v3.1 is known: mimic-code's concepts use the same ones for v3.1, and by a
-- published summary of its changelog v3.1 put labevents itemids back to the v2.2 numbering after v3.0 had
-- changed some. Which ones v3.0 changed was not found, so no v3.0 row is encoded; the dictionary check is what
-- guards a v3.0 (or any other) download.

CREATE OR REPLACE TABLE variable_map AS
SELECT position, source_table,
       CASE WHEN list_contains(CAST({{ variable_map_excluded }} AS VARCHAR[]), source_table || ':' || itemid)
            THEN NULL ELSE itemid END AS itemid,
       variable, label, unit, scale, shift, valid_low, valid_high
FROM (VALUES
    -- position, table, itemid, variable, dictionary label, unit, value * scale + shift, valid range, majors
    ( 1, 'labevents',   51222, 'hemoglobin',      'Hemoglobin',                            NULL,  1.0, 0.0,    0.0,   30.0, '2,3'),
    ( 2, 'labevents',   51221, 'hematocrit',      'Hematocrit',                            NULL,  1.0, 0.0,    0.0,  100.0, '2,3'),
    ( 3, 'labevents',   51301, 'wbc',             'White Blood Cells',                     NULL,  1.0, 0.0,    0.0, 1000.0, '2,3'),
    ( 4, 'labevents',   51265, 'platelets',       'Platelet Count',                        NULL,  1.0, 0.0,    0.0, 3000.0, '2,3'),
    ( 5, 'labevents',   50983, 'sodium',          'Sodium',                                NULL,  1.0, 0.0,   50.0,  250.0, '2,3'),
    ( 6, 'labevents',   50971, 'potassium',       'Potassium',                             NULL,  1.0, 0.0,    0.5,   15.0, '2,3'),
    ( 7, 'labevents',   50902, 'chloride',        'Chloride',                              NULL,  1.0, 0.0,   40.0,  200.0, '2,3'),
    ( 8, 'labevents',   50882, 'bicarbonate',     'Bicarbonate',                           NULL,  1.0, 0.0,    0.0,   70.0, '2,3'),
    ( 9, 'labevents',   51006, 'bun',             'Urea Nitrogen',                         NULL,  1.0, 0.0,    0.0,  300.0, '2,3'),
    (10, 'labevents',   50912, 'creatinine',      'Creatinine',                            NULL,  1.0, 0.0,    0.0,   40.0, '2,3'),
    (11, 'labevents',   50931, 'glucose',         'Glucose',                               NULL,  1.0, 0.0,    0.0, 3000.0, '2,3'),
    (12, 'labevents',   50893, 'calcium',         'Calcium, Total',                        NULL,  1.0, 0.0,    0.0,   30.0, '2,3'),
    (13, 'labevents',   50960, 'magnesium',       'Magnesium',                             NULL,  1.0, 0.0,    0.0,   20.0, '2,3'),
    (14, 'labevents',   50970, 'phosphate',       'Phosphate',                             NULL,  1.0, 0.0,    0.0,   30.0, '2,3'),
    (15, 'labevents',   50868, 'anion_gap',       'Anion Gap',                             NULL,  1.0, 0.0,  -20.0,   80.0, '2,3'),
    (16, 'labevents',   50813, 'lactate',         'Lactate',                               NULL,  1.0, 0.0,    0.0,   40.0, '2,3'),
    (17, 'labevents',   50885, 'bilirubin_total', 'Bilirubin, Total',                      NULL,  1.0, 0.0,    0.0,  100.0, '2,3'),
    (18, 'labevents',   50862, 'albumin',         'Albumin',                               NULL,  1.0, 0.0,    0.0,   10.0, '2,3'),
    (19, 'labevents',   51237, 'inr',             'INR(PT)',                               NULL,  1.0, 0.0,    0.0,   30.0, '2,3'),
    (20, 'labevents',   51275, 'ptt',             'PTT',                                   NULL,  1.0, 0.0,    0.0,  300.0, '2,3'),
    (21, 'chartevents', 220045, 'heart_rate',      'Heart Rate',                            NULL,  1.0, 0.0,    0.0,  300.0, '2,3'),
    (22, 'chartevents', 220179, 'sbp',             'Non Invasive Blood Pressure systolic',  NULL,  1.0, 0.0,    0.0,  400.0, '2,3'),
    (22, 'chartevents', 220050, 'sbp',             'Arterial Blood Pressure systolic',      NULL,  1.0, 0.0,    0.0,  400.0, '2,3'),
    (23, 'chartevents', 220180, 'dbp',             'Non Invasive Blood Pressure diastolic', NULL,  1.0, 0.0,    0.0,  300.0, '2,3'),
    (23, 'chartevents', 220051, 'dbp',             'Arterial Blood Pressure diastolic',     NULL,  1.0, 0.0,    0.0,  300.0, '2,3'),
    (24, 'chartevents', 220181, 'mbp',             'Non Invasive Blood Pressure mean',      NULL,  1.0, 0.0,    0.0,  300.0, '2,3'),
    (24, 'chartevents', 220052, 'mbp',             'Arterial Blood Pressure mean',          NULL,  1.0, 0.0,    0.0,  300.0, '2,3'),
    (25, 'chartevents', 220210, 'resp_rate',       'Respiratory Rate',                      NULL,  1.0, 0.0,    0.0,  100.0, '2,3'),
    (25, 'chartevents', 224690, 'resp_rate',       'Respiratory Rate (Total)',              NULL,  1.0, 0.0,    0.0,  100.0, '2,3'),
    (26, 'chartevents', 220277, 'spo2',            'O2 saturation pulseoxymetry',           NULL,  1.0, 0.0,    0.0,  100.0, '2,3'),
    -- Fahrenheit -> Celsius: (F - 32) * 5/9 = F * 5/9 - 160/9
    (27, 'chartevents', 223761, 'temperature',     'Temperature Fahrenheit',                '°F',  5.0 / 9.0, -160.0 / 9.0, 25.0, 45.0, '2,3'),
    (27, 'chartevents', 223762, 'temperature',     'Temperature Celsius',                   '°C',  1.0, 0.0,   25.0,   45.0, '2,3'),
    (28, 'chartevents', 220739, 'gcs_eye',         'GCS - Eye Opening',                     NULL,  1.0, 0.0,    1.0,    4.0, '2,3'),
    (29, 'chartevents', 223900, 'gcs_verbal',      'GCS - Verbal Response',                 NULL,  1.0, 0.0,    1.0,    5.0, '2,3'),
    (30, 'chartevents', 223901, 'gcs_motor',       'GCS - Motor Response',                  NULL,  1.0, 0.0,    1.0,    6.0, '2,3'),
    (31, 'chartevents', 226512, 'weight',          'Admission Weight (Kg)',                 'kg',  1.0, 0.0,    0.5,  500.0, '2,3'),
    (31, 'chartevents', 224639, 'weight',          'Daily Weight',                          'kg',  1.0, 0.0,    0.5,  500.0, '2,3')
) AS t(position, source_table, itemid, variable, label, unit, scale, shift, valid_low, valid_high, majors)
WHERE list_contains(string_split(majors, ','), CAST({{ dataset_major }} AS VARCHAR));

-- variables: one row per variable with variable_key, its rank in name order. measurement_events carries the
-- 2-byte key instead of the name: grouping and sorting millions of rows by a small integer costs a fraction of
-- doing it by a string, and sorting by the key gives the name order the outputs are written in.
CREATE OR REPLACE TABLE variables AS
SELECT variable, CAST(row_number() OVER (ORDER BY variable) AS SMALLINT) AS variable_key
FROM (SELECT DISTINCT variable FROM variable_map);
