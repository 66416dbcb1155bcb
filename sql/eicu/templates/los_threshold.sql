-- template los_threshold (eICU-CRD): is the unit stay longer than a threshold, asked H hours into it
-- (docs/tasks.md, "Templates"); the same shape as sql/mimic_iv/templates/los_threshold.sql on eICU's clock.
-- Depends on: stays. Parameters: threshold_days, horizon_hours (H), lookback_hours, sample_unit (subject | stay).
--
-- Index = the patient's first unit stay (stays.stay_rank = 1, see stays.sql) chosen before exclusions, or every
-- unit stay when sample_unit = 'stay'. Prediction at unit admission + H from [admission - lookback, admission + H].
-- Label column `outcome` = unit length of stay (unitdischargeoffset, minutes from unit admission) longer than
-- threshold_days days. Inclusion columns as icu_mortality.sql: incl_adult, incl_stay_at_least_h
-- (unitdischargeoffset >= H * 60), incl_alive_at_h (no unit or hospital death at an offset <= H * 60).

CREATE OR REPLACE TABLE candidates AS
WITH indexed AS (
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
    CAST(s.unitdischargeoffset > {{ threshold_days }} * 1440 AS TINYINT) AS outcome,
    s.gender,
    s.ethnicity,
    s.age_group,
    s.unit_type,
    s.age,
    s.age_over_89,
    coalesce(s.age >= 18, false) AS incl_adult,
    coalesce(s.unitdischargeoffset >= s.horizon_minute, false) AS incl_stay_at_least_h,
    NOT coalesce(s.unitdischargestatus = 'Expired' AND s.unitdischargeoffset <= s.horizon_minute, false)
        AND NOT coalesce(s.hospitaldischargestatus = 'Expired' AND s.hospitaldischargeoffset <= s.horizon_minute, false)
        AS incl_alive_at_h,
    -CAST({{ lookback_hours }} AS BIGINT) * 60 AS _window_start_offset,
    s.horizon_minute AS _prediction_offset,
    s.admit_source AS _admit_source,
    s.admissionheight AS _admission_height,
    s.admissionweight AS _admission_weight,
    s.unit_admit_minute AS _unit_admit_minute,
    s.unitdischargeoffset AS _unit_discharge_offset
FROM indexed AS s;
