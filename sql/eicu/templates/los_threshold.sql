-- template los_threshold (eICU-CRD): is the unit stay longer than a threshold, asked H hours into it
-- (docs/tasks.md, "Templates"); the same shape as sql/mimic_iv/templates/los_threshold.sql on eICU's clock.
-- Depends on: unit_stay_samples (stays). Parameters: threshold_days, horizon_hours (H), lookback_hours,
-- sample_unit (subject | stay).
--
-- Index = the patient's first unit stay (stays.stay_rank = 1, see stays.sql) chosen before exclusions, or every
-- unit stay when sample_unit = 'stay'. Prediction at unit admission + H from [admission - lookback, admission + H].
-- Label column `outcome` = unit length of stay (unitdischargeoffset, minutes from unit admission) longer than
-- threshold_days days. Inclusion columns as icu_mortality.sql: incl_adult, incl_stay_at_least_h
-- (unitdischargeoffset >= H * 60), incl_alive_at_h (no unit or hospital death at an offset <= H * 60).

CREATE OR REPLACE TABLE candidates AS
SELECT
    c.*,
    CAST(c._unit_discharge_offset > {{ threshold_days }} * 1440 AS TINYINT) AS outcome
FROM unit_stay_samples({{ horizon_hours }}, {{ lookback_hours }}, {{ sample_unit }}) AS c;
