-- candidates (task in_icu_mortality_24h): death before ICU discharge, predicted H hours into the stay, with the
-- MEDS-DEV task's gap rule (mortality/in_icu/first_24h). Depends on: icu_stay_samples, icustays.
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
WITH samples AS (
    SELECT c.*, c.index_time + to_hours(CAST({{ gap_hours }} AS BIGINT)) AS _gap_end
    FROM icu_stay_samples({{ horizon_hours }}, {{ lookback_hours }}, {{ sample_unit }}) AS c
),
admitted_in_gap AS (
    SELECT DISTINCT c.stay_id
    FROM samples AS c
    JOIN icustays AS o
      ON o.subject_id = c.subject_id
     AND o.stay_id <> c.stay_id
     AND o.intime > c.index_time
     AND o.intime <= c._gap_end
)
SELECT
    c.*,
    CAST(coalesce(c._deathtime <= c._outtime, false) AS TINYINT) AS in_icu_mortality,
    coalesce(c._outtime > c._gap_end, false) AS incl_in_icu_through_gap,
    (c._deathtime IS NULL OR c._deathtime > c._gap_end) AS incl_alive_through_gap,
    g.stay_id IS NULL AS incl_no_icu_admission_in_gap
FROM samples AS c
LEFT JOIN admitted_in_gap AS g ON g.stay_id = c.stay_id;
