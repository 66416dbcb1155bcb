-- structured_feature_list: the columns of structured.parquet, in order, and the modality each belongs to.
-- Depends on: variable_map.
--
-- Fixed by definition (not by data) so structured.parquet has the same schema on the demo, the full database and
-- simulated data, and a model trained on one build can score another. Four structured modalities:
--   demographics  known at unit admission: age (90 for "> 89", with its flag), sex, ethnicity, unit type, where
--                 the patient came from, admission height / weight, hours from hospital to unit admission;
--   labs          per lab variable of variable_map: min / max / mean / last / count over the window;
--   apache        the 24 apacheApsVar physiology columns (worst value of the first APACHE day);
--   codes         distinct diagnosis / treatment entries per top-level category, and the admission diagnosis
--                 (operative, elective surgery, organ system) -- categories of macros.sql, 'other' catching the rest.
-- Lists (not VALUES) keep the order explicit: position = index in the list.

CREATE OR REPLACE TABLE structured_feature_list AS
WITH lists AS (
    SELECT
        ['age', 'age_over_89', 'gender_F', 'gender_M', 'gender_unknown',
         'ethnicity_caucasian', 'ethnicity_african_american', 'ethnicity_hispanic', 'ethnicity_asian',
         'ethnicity_native_american', 'ethnicity_other_unknown',
         'unit_type_med_surg_icu', 'unit_type_micu', 'unit_type_sicu', 'unit_type_ccu_cticu', 'unit_type_csicu',
         'unit_type_cticu', 'unit_type_cardiac_icu', 'unit_type_neuro_icu', 'unit_type_other',
         'admit_source_emergency', 'admit_source_operating_room', 'admit_source_floor', 'admit_source_step_down',
         'admit_source_icu', 'admit_source_other_hospital', 'admit_source_direct_admit', 'admit_source_other',
         'admission_height', 'admission_weight', 'hours_since_hospital_admit'] AS demographics,
        ['min', 'max', 'mean', 'last', 'count'] AS stats,
        ['intubated', 'vent', 'dialysis', 'eyes', 'motor', 'verbal', 'meds', 'urine', 'wbc', 'temperature',
         'respiratoryrate', 'sodium', 'heartrate', 'meanbp', 'ph', 'hematocrit', 'creatinine', 'albumin', 'pao2',
         'pco2', 'bun', 'glucose', 'bilirubin', 'fio2'] AS apache,
        ['cardiovascular', 'pulmonary', 'neurologic', 'renal', 'gastrointestinal', 'endocrine',
         'infectious_diseases', 'hematology', 'burns_trauma', 'toxicology', 'oncology', 'surgery', 'general',
         'transplant', 'other'] AS categories,
        ['operative', 'elective', 'system_cardiovascular', 'system_respiratory', 'system_neurologic',
         'system_gastrointestinal', 'system_metabolic_endocrine', 'system_genitourinary', 'system_trauma',
         'system_musculoskeletal_skin', 'system_hematology', 'system_transplant', 'system_other'] AS admitdx
),
lab_variables AS (
    SELECT DISTINCT position, variable FROM variable_map WHERE modality = 'labs'
)
SELECT CAST(k AS INTEGER) AS position, demographics[k] AS feature, 'demographics' AS modality
FROM lists, range(1, len(demographics) + 1) AS r(k)
UNION ALL
SELECT CAST(1000 + v.position * 10 + k AS INTEGER), v.variable || '_' || stats[k], 'labs'
FROM lists, lab_variables AS v, range(1, len(stats) + 1) AS r(k)
UNION ALL
SELECT CAST(3000 + k AS INTEGER), 'apache_' || apache[k], 'apache'
FROM lists, range(1, len(apache) + 1) AS r(k)
UNION ALL
SELECT CAST(5000 + k AS INTEGER), 'dx_' || categories[k], 'codes'
FROM lists, range(1, len(categories) + 1) AS r(k)
UNION ALL
SELECT CAST(5100 + k AS INTEGER), 'tx_' || categories[k], 'codes'
FROM lists, range(1, len(categories) + 1) AS r(k)
UNION ALL
SELECT CAST(5200 + k AS INTEGER), 'admitdx_' || admitdx[k], 'codes'
FROM lists, range(1, len(admitdx) + 1) AS r(k);
