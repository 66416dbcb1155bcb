-- candidates (task in_icu_mortality_24h): death before ICU discharge, predicted H hours into the stay, with the
-- MEDS-DEV task's gap rule (mortality/in_icu/first_24h). Depends on: icustays, admission_demographics.
-- Parameters: horizon_hours (H = 24), gap_hours (G = 48), lookback_hours (6), sample_unit (subject | stay).
--
-- Index = the subject's first ICU stay (earliest intime, ties by stay_id) chosen before exclusions, or every stay
-- when sample_unit = 'stay' (MEDS-DEV's trigger is every ICU admission). Prediction at intime + H from
-- [intime - lookback_hours, intime + H].
-- MEDS-DEV's gap window (intime, intime + G] must hold no ICU discharge, no death and no other ICU admission:
-- stays that end by intime + G (outtime <= intime + G), patients dead by then (deathtime <= intime + G) and
-- subjects with another ICU stay starting in the gap are excluded.
-- Label = the stay ends in death: deathtime of the stay's admission is at or before outtime (the first of ICU
-- discharge and death after the gap is a death). A death on the ward after ICU discharge, or in a later ICU stay
-- of the same hospitalisation, is a 0 - that is in-hospital mortality, a different task.

CREATE OR REPLACE TABLE candidates AS
WITH ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.subject_id ORDER BY s.intime, s.stay_id) AS stay_rank
    FROM icustays AS s
),
indexed AS (
    SELECT
        s.*,
        s.intime + to_hours(CAST({{ horizon_hours }} AS BIGINT)) AS horizon_time,
        s.intime + to_hours(CAST({{ gap_hours }} AS BIGINT)) AS gap_end
    FROM ranked AS s
    WHERE s.stay_rank = 1 OR {{ sample_unit }} = 'stay'
),
admitted_in_gap AS (
    SELECT DISTINCT s.stay_id
    FROM indexed AS s
    JOIN icustays AS o
      ON o.subject_id = s.subject_id
     AND o.stay_id <> s.stay_id
     AND o.intime > s.intime
     AND o.intime <= s.gap_end
)
SELECT
    CAST(s.stay_id AS VARCHAR) AS sample_id,
    s.subject_id,
    s.hadm_id,
    s.stay_id,
    s.intime AS index_time,
    s.horizon_time AS prediction_time,
    s.intime - to_hours(CAST({{ lookback_hours }} AS BIGINT)) AS window_start_time,
    CAST(coalesce(d.deathtime <= s.outtime, false) AS TINYINT) AS in_icu_mortality,
    d.gender,
    d.race_group,
    d.insurance,
    age_group(age_at(d.anchor_age, d.anchor_year, s.intime)) AS age_group,
    CAST(age_at(d.anchor_age, d.anchor_year, s.intime) AS DOUBLE) AS age,
    d.admission_type,
    coalesce(age_at(d.anchor_age, d.anchor_year, s.intime) >= 18, false) AS incl_adult,
    coalesce(s.outtime > s.gap_end, false) AS incl_in_icu_through_gap,
    (d.deathtime IS NULL OR d.deathtime > s.gap_end) AS incl_alive_through_gap,
    g.stay_id IS NULL AS incl_no_icu_admission_in_gap,
    CAST(NULL AS BIGINT) AS _note_hadm_id,
    s.horizon_time AS _note_end_time
FROM indexed AS s
LEFT JOIN admission_demographics AS d ON d.hadm_id = s.hadm_id
LEFT JOIN admitted_in_gap AS g ON g.stay_id = s.stay_id;
