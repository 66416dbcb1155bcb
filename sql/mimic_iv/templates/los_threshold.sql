-- template los_threshold: is the ICU stay longer than a threshold, asked H hours into it (docs/tasks.md,
-- "Templates"). A task of this shape is a YAML with `template: los_threshold` and no SQL.
-- Depends on: icu_stay_samples (icustays, admission_demographics).
-- Parameters: threshold_days, horizon_hours (H), lookback_hours, sample_unit (subject | stay).
--
-- Index = the subject's first ICU stay (earliest intime, ties by stay_id) chosen before exclusions, or every
-- stay when sample_unit = 'stay'. Prediction at intime + H from [intime - lookback_hours, intime + H].
-- Label column `outcome` = ICU length of stay (outtime - intime) > threshold_days days (strictly longer).
-- Inclusion columns: incl_adult; incl_stay_at_least_h (outtime >= intime + H: a stay over by H has a known
-- answer); incl_alive_at_h (deathtime of the stay's admission after intime + H). A death in the ICU after H
-- ends the stay like a discharge: its length counts as recorded (outtime).

CREATE OR REPLACE TABLE candidates AS
SELECT
    c.*,
    CAST(c._outtime > c.index_time + to_microseconds(CAST({{ threshold_days }} * 86400e6 AS BIGINT)) AS TINYINT)
        AS outcome,
    coalesce(c._outtime >= c.prediction_time, false) AS incl_stay_at_least_h,
    (c._deathtime IS NULL OR c._deathtime > c.prediction_time) AS incl_alive_at_h
FROM icu_stay_samples({{ horizon_hours }}, {{ lookback_hours }}, {{ sample_unit }}) AS c;
