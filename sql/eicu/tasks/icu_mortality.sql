-- candidates (task icu_mortality_24h): each patient's FIRST unit stay, observed for H hours.
-- Depends on: stays. Parameters: horizon_hours (H), lookback_hours (6).
--
-- Index = the patient's first unit stay (stays.stay_rank = 1; see stays.sql for how "first" is decided), chosen
-- before exclusions: a patient whose first stay is excluded is not replaced by a later one.
-- sample_unit = 'stay': every unit stay is an index event (splits stay by patient).
-- Prediction at unit admission + H from the window [admission - 6 h, admission + H]; labs drawn in the hours
-- before the unit admission (emergency department, ward) carry negative offsets and are kept.
-- Excluded: age < 18 (or unknown); unit stays shorter than H (unitdischargeoffset < H * 60); patients known dead
-- at or before H (unit death = 'Expired' at unit discharge, or hospital death at hospitaldischargeoffset);
-- unknown unit discharge status (no label).
-- Label = death in the unit: unitdischargestatus = 'Expired'. NOT hospitaldischargestatus: a patient discharged
-- alive from the unit who dies later on the ward is a 0 here (docs/tasks.md, "traps").

CREATE OR REPLACE TABLE candidates AS
WITH first_stay AS (
    SELECT *, CAST({{ horizon_hours }} AS BIGINT) * 60 AS horizon_minute
    FROM stays WHERE stay_rank = 1 OR {{ sample_unit }} = 'stay'
)
SELECT
    CAST(s.patientunitstayid AS VARCHAR) AS sample_id,
    s.subject_id,
    s.patientunitstayid,
    s.patienthealthsystemstayid,
    s.hospitalid,
    s.unit_admit_time AS index_time,
    eicu_at(s.unit_admit_time, s.horizon_minute) AS prediction_time,
    eicu_at(s.unit_admit_time, -CAST({{ lookback_hours }} AS BIGINT) * 60) AS window_start_time,
    CASE s.unitdischargestatus WHEN 'Expired' THEN 1 WHEN 'Alive' THEN 0 END AS icu_mortality,
    s.gender,
    s.ethnicity,
    s.age_group,
    s.unit_type,
    s.age,
    s.age_over_89,
    -- no length of stay here: it is known only at unit discharge, after the prediction time
    coalesce(s.age >= 18, false) AS incl_adult,
    coalesce(s.unitdischargeoffset >= s.horizon_minute, false) AS incl_stay_at_least_h,
    NOT coalesce(s.unitdischargestatus = 'Expired' AND s.unitdischargeoffset <= s.horizon_minute, false)
        AND NOT coalesce(s.hospitaldischargestatus = 'Expired' AND s.hospitaldischargeoffset <= s.horizon_minute, false)
        AS incl_alive_at_h,
    coalesce(s.unitdischargestatus IN ('Alive', 'Expired'), false) AS incl_known_outcome,
    -CAST({{ lookback_hours }} AS BIGINT) * 60 AS _window_start_offset,
    s.horizon_minute AS _prediction_offset,
    s.admit_source AS _admit_source,
    s.admissionheight AS _admission_height,
    s.admissionweight AS _admission_weight,
    s.unit_admit_minute AS _unit_admit_minute,
    s.unitdischargeoffset AS _unit_discharge_offset
FROM first_stay AS s;
