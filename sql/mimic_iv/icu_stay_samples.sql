-- icu_stay_samples(horizon_hours, lookback_hours, sample_unit): the samples of a task indexed on an ICU stay and
-- asked horizon_hours into it (tasks in_hospital_mortality and in_icu_mortality, template los_threshold).
-- Depends on: icustays, admission_demographics, macros.
--
-- Index = the subject's first ICU stay (earliest intime, ties by stay_id) chosen before any exclusion (no
-- fall-back to a later stay), or every stay when sample_unit = 'stay' (splits stay by subject). Prediction at
-- intime + horizon_hours from the window [intime - lookback_hours, intime + horizon_hours]. Columns: the
-- contract's ids and times, the demographics at intime, incl_adult (age >= 18 at intime), the note rule (notes by
-- subject and time up to the prediction time, whatever their hadm_id), and, internal for the task's label and
-- inclusions, the stay's _outtime and its admission's _deathtime and _hospital_expire_flag.

CREATE OR REPLACE MACRO icu_stay_samples(horizon_hours, lookback_hours, sample_unit) AS TABLE
WITH ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.subject_id ORDER BY s.intime, s.stay_id) AS stay_rank
    FROM icustays AS s
)
SELECT
    CAST(s.stay_id AS VARCHAR) AS sample_id,
    s.subject_id,
    s.hadm_id,
    s.stay_id,
    s.intime AS index_time,
    s.intime + to_hours(CAST(horizon_hours AS BIGINT)) AS prediction_time,
    s.intime - to_hours(CAST(lookback_hours AS BIGINT)) AS window_start_time,
    d.gender,
    d.race_group,
    d.insurance,
    age_group(age_at(d.anchor_age, d.anchor_year, s.intime)) AS age_group,
    CAST(age_at(d.anchor_age, d.anchor_year, s.intime) AS DOUBLE) AS age,
    d.admission_type,
    coalesce(age_at(d.anchor_age, d.anchor_year, s.intime) >= 18, false) AS incl_adult,
    CAST(NULL AS BIGINT) AS _note_hadm_id,
    s.intime + to_hours(CAST(horizon_hours AS BIGINT)) AS _note_end_time,
    s.outtime AS _outtime,
    d.deathtime AS _deathtime,
    d.hospital_expire_flag AS _hospital_expire_flag
FROM ranked AS s
LEFT JOIN admission_demographics AS d ON d.hadm_id = s.hadm_id
WHERE s.stay_rank = 1 OR sample_unit = 'stay';
