-- variable_map: the ONE place that lists which lab names and vital-sign columns feed labs and vitals.
-- Depends on: nothing.
--
-- Labs (lab.labname, eICU's own names): the basic metabolic panel, complete blood count, liver / coagulation
-- markers, lactate and the arterial blood gas -- the tests drawn for nearly every ICU patient and the inputs of
-- APACHE-like severity scores; the same variables as MIMIC-IV's map where both have them, under the same names.
-- 'bedside glucose' (point of care) and 'glucose' (laboratory) are the same quantity and merge.
-- Vitals (vitalPeriodic: 5-minute medians from the bedside monitor; vitalAperiodic: non-invasive cuff pressures):
-- invasive (systemic*) and non-invasive cuff blood pressures merge into sbp / dbp / mbp, as in MIMIC-IV.
-- valid_low / valid_high drop charting errors, not real extremes; bounds are physiological limits, deliberately
-- wide. eICU temperatures are in Celsius.

CREATE OR REPLACE TABLE variable_map AS
SELECT * FROM (VALUES
    -- position, modality, source table, labname or column, variable, valid range
    ( 1, 'labs',   'lab', 'Hgb',                 'hemoglobin',       0.0,   30.0),
    ( 2, 'labs',   'lab', 'Hct',                 'hematocrit',       0.0,  100.0),
    ( 3, 'labs',   'lab', 'WBC x 1000',          'wbc',              0.0, 1000.0),
    ( 4, 'labs',   'lab', 'platelets x 1000',    'platelets',        0.0, 3000.0),
    ( 5, 'labs',   'lab', 'sodium',              'sodium',          50.0,  250.0),
    ( 6, 'labs',   'lab', 'potassium',           'potassium',        0.5,   15.0),
    ( 7, 'labs',   'lab', 'chloride',            'chloride',        40.0,  200.0),
    ( 8, 'labs',   'lab', 'bicarbonate',         'bicarbonate',      0.0,   70.0),
    ( 9, 'labs',   'lab', 'BUN',                 'bun',              0.0,  300.0),
    (10, 'labs',   'lab', 'creatinine',          'creatinine',       0.0,   40.0),
    (11, 'labs',   'lab', 'glucose',             'glucose',          0.0, 3000.0),
    (11, 'labs',   'lab', 'bedside glucose',     'glucose',          0.0, 3000.0),
    (12, 'labs',   'lab', 'calcium',             'calcium',          0.0,   30.0),
    (13, 'labs',   'lab', 'magnesium',           'magnesium',        0.0,   20.0),
    (14, 'labs',   'lab', 'phosphate',           'phosphate',        0.0,   30.0),
    (15, 'labs',   'lab', 'anion gap',           'anion_gap',      -20.0,   80.0),
    (16, 'labs',   'lab', 'lactate',             'lactate',          0.0,   40.0),
    (17, 'labs',   'lab', 'total bilirubin',     'bilirubin_total',  0.0,  100.0),
    (18, 'labs',   'lab', 'albumin',             'albumin',          0.0,   10.0),
    (19, 'labs',   'lab', 'PT - INR',            'inr',              0.0,   30.0),
    (20, 'labs',   'lab', 'PTT',                 'ptt',              0.0,  300.0),
    (21, 'labs',   'lab', 'pH',                  'ph',               6.5,    8.0),
    (22, 'labs',   'lab', 'paO2',                'pao2',             0.0,  800.0),
    (23, 'labs',   'lab', 'paCO2',               'paco2',            0.0,  250.0),
    (31, 'vitals', 'vitalperiodic',  'heartrate',            'heart_rate',   0.0, 300.0),
    (32, 'vitals', 'vitalperiodic',  'systemicsystolic',     'sbp',          0.0, 400.0),
    (32, 'vitals', 'vitalaperiodic', 'noninvasivesystolic',  'sbp',          0.0, 400.0),
    (33, 'vitals', 'vitalperiodic',  'systemicdiastolic',    'dbp',          0.0, 300.0),
    (33, 'vitals', 'vitalaperiodic', 'noninvasivediastolic', 'dbp',          0.0, 300.0),
    (34, 'vitals', 'vitalperiodic',  'systemicmean',         'mbp',          0.0, 300.0),
    (34, 'vitals', 'vitalaperiodic', 'noninvasivemean',      'mbp',          0.0, 300.0),
    (35, 'vitals', 'vitalperiodic',  'respiration',          'resp_rate',    0.0, 100.0),
    (36, 'vitals', 'vitalperiodic',  'sao2',                 'spo2',         0.0, 100.0),
    (37, 'vitals', 'vitalperiodic',  'temperature',          'temperature', 25.0,  45.0),
    (38, 'vitals', 'vitalperiodic',  'cvp',                  'cvp',        -10.0,  60.0),
    (39, 'vitals', 'vitalperiodic',  'etco2',                'etco2',        0.0, 150.0)
) AS t(position, modality, source_table, item, variable, valid_low, valid_high);
