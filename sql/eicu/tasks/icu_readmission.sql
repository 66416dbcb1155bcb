-- candidates (task icu_readmission_15d): each patient's FIRST unit stay, predicted at unit discharge.
-- Depends on: stays. Parameters: readmission_days (15), window_hours (48), lookback_hours (6).
--
-- Index = the patient's first unit stay (stays.stay_rank = 1), chosen before exclusions (no fall-back); sample_unit = 'stay': every unit stay (splits by patient).
-- Prediction at unit discharge (unitdischargeoffset) from its last `window_hours` hours, never starting earlier
-- than `lookback_hours` before the unit admission: [max(discharge - 48 h, admission - 6 h), discharge].
-- Label = another unit stay of the SAME hospital stay (patienthealthsystemstayid) whose unit admission is in
-- (discharge, discharge + 15 days], on the hospital stay's clock (unit_admit_minute). A later hospital stay is
-- not counted: eICU cannot say how long after a hospital discharge it began.
-- Excluded: age < 18 (or unknown); not discharged alive from the unit (unitdischargestatus <> 'Alive');
-- discharged to another ICU or a step-down unit: those go straight into the next unit stay of the same hospital
-- stay (in the demo 192 of 244 step-down discharges start the next stay in the same minute), a transfer and not a
-- readmission, so the question is not asked of them.

CREATE OR REPLACE TABLE candidates AS
WITH first_stay AS (
    SELECT * FROM stays WHERE stay_rank = 1 OR {{ sample_unit }} = 'stay'
),
readmitted AS (
    SELECT DISTINCT f.patientunitstayid
    FROM first_stay AS f
    JOIN stays AS o
      ON o.patienthealthsystemstayid = f.patienthealthsystemstayid
     AND o.patientunitstayid <> f.patientunitstayid
     AND o.unit_admit_minute > f.unit_admit_minute + f.unitdischargeoffset
     AND o.unit_admit_minute <= f.unit_admit_minute + f.unitdischargeoffset
                                + CAST({{ readmission_days }} AS BIGINT) * 1440
),
bounds AS (
    SELECT
        f.*,
        greatest(f.unitdischargeoffset - CAST({{ window_hours }} AS BIGINT) * 60,
                 -CAST({{ lookback_hours }} AS BIGINT) * 60) AS window_start_offset
    FROM first_stay AS f
)
SELECT
    CAST(s.patientunitstayid AS VARCHAR) AS sample_id,
    s.subject_id,
    s.patientunitstayid,
    s.patienthealthsystemstayid,
    s.hospitalid,
    s.unit_admit_time AS index_time,
    eicu_at(s.unit_admit_time, s.unitdischargeoffset) AS prediction_time,
    eicu_at(s.unit_admit_time, s.window_start_offset) AS window_start_time,
    CAST(r.patientunitstayid IS NOT NULL AS TINYINT) AS icu_readmission,
    s.gender,
    s.ethnicity,
    s.age_group,
    s.unit_type,
    s.age,
    s.age_over_89,
    s.unitdischargeoffset / 60.0 AS unit_los_hours,
    s.unitdischargelocation AS unit_discharge_location,
    coalesce(s.age >= 18, false) AS incl_adult,
    coalesce(s.unitdischargestatus = 'Alive', false) AS incl_alive_at_unit_discharge,
    coalesce(s.unitdischargelocation NOT IN ('ICU', 'Other ICU', 'Other ICU (CABG)', 'Step-Down Unit (SDU)'), true)
        AS incl_not_transferred,
    s.window_start_offset AS _window_start_offset,
    s.unitdischargeoffset AS _prediction_offset,
    s.admit_source AS _admit_source,
    s.admissionheight AS _admission_height,
    s.admissionweight AS _admission_weight,
    s.unit_admit_minute AS _unit_admit_minute,
    s.unitdischargeoffset AS _unit_discharge_offset
FROM bounds AS s
LEFT JOIN readmitted AS r USING (patientunitstayid);
