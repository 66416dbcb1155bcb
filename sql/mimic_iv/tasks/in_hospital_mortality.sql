-- candidates (tasks in_hospital_mortality_24h / _48h): each subject's FIRST ICU stay, observed for H hours.
-- Depends on: icustays, admission_demographics. Parameters: horizon_hours (H), lookback_hours (6),
-- sample_unit (subject: the first stay; stay: every ICU stay, splits still by subject).
--
-- Index = earliest ICU intime, ties by stay_id, chosen before exclusions (no fall-back to a later stay).
-- Prediction at intime + H from the window [intime - 6 h, intime + H]: the 6 h before ICU admission carry the
-- emergency-department / ward measurements that triage the patient into the ICU.
-- Excluded: age < 18 at intime; stays that end before intime + H (outtime < intime + H: the question "will this
-- patient die in hospital?" is asked of patients still in the ICU at H); and patients who died at or before
-- intime + H (deathtime <= intime + H), for whom the outcome is already known at prediction time.
-- Label = hospital_expire_flag of the stay's admission (death anywhere in that hospitalisation).
-- Discharge summaries are never allowed (written at discharge, they state the outcome); radiology reports and
-- CXR studies count by subject and time inside the window, whatever their hadm_id.

CREATE OR REPLACE TABLE candidates AS
WITH ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.subject_id ORDER BY s.intime, s.stay_id) AS stay_rank
    FROM icustays AS s
),
first_stay AS (
    SELECT
        s.*,
        s.intime + to_hours(CAST({{ horizon_hours }} AS BIGINT)) AS horizon_time
    FROM ranked AS s
    WHERE stay_rank = 1 OR {{ sample_unit }} = 'stay'
)
SELECT
    CAST(s.stay_id AS VARCHAR) AS sample_id,
    s.subject_id,
    s.hadm_id,
    s.stay_id,
    s.intime AS index_time,
    s.horizon_time AS prediction_time,
    s.intime - to_hours(CAST({{ lookback_hours }} AS BIGINT)) AS window_start_time,
    CAST(d.hospital_expire_flag AS TINYINT) AS in_hospital_mortality,
    d.gender,
    d.race_group,
    d.insurance,
    age_group(age_at(d.anchor_age, d.anchor_year, s.intime)) AS age_group,
    CAST(age_at(d.anchor_age, d.anchor_year, s.intime) AS DOUBLE) AS age,
    d.admission_type,
    coalesce(age_at(d.anchor_age, d.anchor_year, s.intime) >= 18, false) AS incl_adult,
    coalesce(s.outtime >= s.horizon_time, false) AS incl_stay_at_least_h,
    (d.deathtime IS NULL OR d.deathtime > s.horizon_time) AS incl_alive_at_h,
    CAST(NULL AS BIGINT) AS _note_hadm_id,
    s.horizon_time AS _note_end_time
FROM first_stay AS s
LEFT JOIN admission_demographics AS d ON d.hadm_id = s.hadm_id;
