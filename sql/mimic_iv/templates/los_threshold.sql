-- template los_threshold: is the ICU stay longer than a threshold, asked H hours into it (docs/tasks.md,
-- "Templates"). A task of this shape is a YAML with `template: los_threshold` and no SQL.
-- Depends on: icustays, admission_demographics.
-- Parameters: threshold_days, horizon_hours (H), lookback_hours, sample_unit (subject | stay).
--
-- Index = the subject's first ICU stay (earliest intime, ties by stay_id) chosen before exclusions, or every
-- stay when sample_unit = 'stay'. Prediction at intime + H from [intime - lookback_hours, intime + H].
-- Label column `outcome` = ICU length of stay (outtime - intime) > threshold_days days (strictly longer).
-- Inclusion columns: incl_adult; incl_stay_at_least_h (outtime >= intime + H: a stay over by H has a known
-- answer); incl_alive_at_h (deathtime of the stay's admission after intime + H). A death in the ICU after H
-- ends the stay like a discharge: its length counts as recorded (outtime).

CREATE OR REPLACE TABLE candidates AS
WITH ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.subject_id ORDER BY s.intime, s.stay_id) AS stay_rank
    FROM icustays AS s
),
indexed AS (
    SELECT s.*, s.intime + to_hours(CAST({{ horizon_hours }} AS BIGINT)) AS horizon_time
    FROM ranked AS s
    WHERE s.stay_rank = 1 OR {{ sample_unit }} = 'stay'
)
SELECT
    CAST(s.stay_id AS VARCHAR) AS sample_id,
    s.subject_id,
    s.hadm_id,
    s.stay_id,
    s.intime AS index_time,
    s.horizon_time AS prediction_time,
    s.intime - to_hours(CAST({{ lookback_hours }} AS BIGINT)) AS window_start_time,
    CAST(s.outtime > s.intime + to_microseconds(CAST({{ threshold_days }} * 86400e6 AS BIGINT)) AS TINYINT) AS outcome,
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
FROM indexed AS s
LEFT JOIN admission_demographics AS d ON d.hadm_id = s.hadm_id;
