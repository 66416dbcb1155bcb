-- candidates (tasks in_hospital_mortality_24h / _48h): each subject's FIRST ICU stay, observed for H hours.
-- Depends on: icu_stay_samples (icustays, admission_demographics). Parameters: horizon_hours (H),
-- lookback_hours (6), sample_unit (subject: the first stay; stay: every ICU stay, splits still by subject).
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
SELECT
    c.*,
    CAST(c._hospital_expire_flag AS TINYINT) AS in_hospital_mortality,
    coalesce(c._outtime >= c.prediction_time, false) AS incl_stay_at_least_h,
    (c._deathtime IS NULL OR c._deathtime > c.prediction_time) AS incl_alive_at_h
FROM icu_stay_samples({{ horizon_hours }}, {{ lookback_hours }}, {{ sample_unit }}) AS c;
