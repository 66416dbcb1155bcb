-- candidates (task icu_mortality_24h): each patient's FIRST unit stay, observed for H hours.
-- Depends on: unit_stay_samples (stays). Parameters: horizon_hours (H), lookback_hours (6), sample_unit.
--
-- Index = the patient's first unit stay (stays.stay_rank = 1; see stays.sql for how "first" is decided), chosen
-- before exclusions: a patient whose first stay is excluded is not replaced by a later one.
-- sample_unit = 'stay': every unit stay is an index event (splits stay by patient).
-- Prediction at unit admission + H from the window [admission - 6 h, admission + H]; labs drawn in the hours
-- before the unit admission (emergency department, ward) carry negative offsets and are kept.
-- Excluded: age < 18 (or unknown); unit stays shorter than H (unitdischargeoffset < H * 60); patients known dead
-- at or before H (unit death = 'Expired' at unit discharge, or hospital death at hospitaldischargeoffset);
-- unknown unit discharge status (no label).
-- Label = death in the unit: unitdischargestatus = 'Expired'. NOT hospitaldischargestatus: a patient discharged
-- alive from the unit who dies later on the ward is a 0 here (docs/tasks.md, "traps").

CREATE OR REPLACE TABLE candidates AS
SELECT
    c.*,
    CASE c._unit_discharge_status WHEN 'Expired' THEN 1 WHEN 'Alive' THEN 0 END AS icu_mortality,
    coalesce(c._unit_discharge_status IN ('Alive', 'Expired'), false) AS incl_known_outcome
FROM unit_stay_samples({{ horizon_hours }}, {{ lookback_hours }}, {{ sample_unit }}) AS c;
