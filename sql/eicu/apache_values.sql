-- apache_values: the APACHE IV physiology (apacheApsVar) of each sample, long form, with the time it is known.
-- Depends on: cohort, apacheapsvar. Parameter: allow_apache.
--
-- apacheApsVar holds the worst value of each physiological variable over the first APACHE day: the first 24 h of
-- the unit stay (the whole stay when it is shorter). Its values are therefore final only at
-- min(unit admission + 24 h, unit discharge), which is the modality's time (apache_offset). A task may use it only
-- when that is at or before its prediction time: icu_mortality_24h predicts at exactly 24 h and
-- icu_readmission_15d at unit discharge, so both can. The APACHE *results* (apachePatientResult: predicted and
-- ACTUAL mortality) and apachePredVar are never read: they hold the outcome.
-- eICU writes -1 for "not measured" in every physiology column; that becomes NULL. One row per stay is
-- expected; a duplicate is resolved to the lowest apacheapsvarid so reruns agree.

CREATE OR REPLACE TABLE apache_values AS
WITH one_row AS (
    SELECT c.sample_id, least(CAST(1440 AS BIGINT), c._unit_discharge_offset) AS apache_offset,
           a.* EXCLUDE (apacheapsvarid, patientunitstayid)
    FROM apacheapsvar AS a
    JOIN cohort AS c ON c.patientunitstayid = a.patientunitstayid
    WHERE {{ allow_apache }}
    QUALIFY row_number() OVER (PARTITION BY c.sample_id ORDER BY a.apacheapsvarid) = 1
),
as_double AS (
    SELECT sample_id, apache_offset, COLUMNS(* EXCLUDE (sample_id, apache_offset))::DOUBLE
    FROM one_row
),
long AS (
    UNPIVOT as_double ON COLUMNS(* EXCLUDE (sample_id, apache_offset)) INTO NAME item VALUE value
)
SELECT l.sample_id, 'apache_' || l.item AS feature, l.value, l.apache_offset, eicu_at(c.index_time, l.apache_offset) AS apache_time
FROM long AS l
JOIN cohort AS c USING (sample_id)
WHERE l.value <> -1 AND l.apache_offset <= c._prediction_offset;
