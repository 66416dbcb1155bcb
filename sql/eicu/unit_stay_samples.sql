-- unit_stay_samples(horizon_hours, lookback_hours, sample_unit): the samples of a task indexed on a unit stay and
-- asked horizon_hours into it (task icu_mortality, template los_threshold). Depends on: stays, macros.
--
-- Index = the patient's first unit stay (stays.stay_rank = 1; see stays.sql for how "first" is decided) chosen
-- before any exclusion (a patient whose first stay is excluded is not replaced by a later one), or every unit stay
-- when sample_unit = 'stay' (splits stay by patient). Prediction at unit admission + H from the window
-- [admission - lookback_hours, admission + H]; labs drawn before the unit admission carry negative offsets and are
-- kept. Columns: the contract's ids and times, the demographics, the inclusions every such task applies -
-- incl_adult (age >= 18), incl_stay_at_least_h (unitdischargeoffset >= H * 60), incl_alive_at_h (no unit or
-- hospital death at an offset <= H * 60) - and, internal, the offsets and admission facts the measurement SQL
-- reads, plus _unit_discharge_status for a label. No length of stay: it is known only at unit discharge.

CREATE OR REPLACE MACRO unit_stay_samples(horizon_hours, lookback_hours, sample_unit) AS TABLE
WITH indexed AS (
    SELECT *, CAST(horizon_hours AS BIGINT) * 60 AS horizon_minute
    FROM stays
    WHERE stay_rank = 1 OR sample_unit = 'stay'
)
SELECT
    CAST(s.patientunitstayid AS VARCHAR) AS sample_id,
    s.subject_id,
    s.patientunitstayid,
    s.patienthealthsystemstayid,
    s.hospitalid,
    s.unit_admit_time AS index_time,
    eicu_at(s.unit_admit_time, s.horizon_minute) AS prediction_time,
    eicu_at(s.unit_admit_time, -CAST(lookback_hours AS BIGINT) * 60) AS window_start_time,
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
    -CAST(lookback_hours AS BIGINT) * 60 AS _window_start_offset,
    s.horizon_minute AS _prediction_offset,
    s.admit_source AS _admit_source,
    s.admissionheight AS _admission_height,
    s.admissionweight AS _admission_weight,
    s.unit_admit_minute AS _unit_admit_minute,
    s.unitdischargeoffset AS _unit_discharge_offset,
    s.unitdischargestatus AS _unit_discharge_status
FROM indexed AS s;
