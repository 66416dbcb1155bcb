-- candidates (task diagnosis_3class): every ADNIMERGE visit, labelled with the diagnosis made at it.
-- Depends on: visits. Parameter: lookback_days (how far back a missing modality may be carried forward).
--
-- Unit = visit (RID + VISCODE); a participant contributes all their visits, so splits are by RID (never by visit:
-- visits of one brain are near-duplicates). Prediction at the visit (EXAMDATE) from what is known by then: the
-- visit's own measurements or, for a modality not measured at it, the most recent earlier visit within
-- lookback_days (modality_visit.sql). Window = [EXAMDATE - lookback_days, EXAMDATE].
-- Label = DX class at the visit (CN 0, MCI 1, Dementia 2). Excluded: no EXAMDATE; no diagnosis at the visit.
-- DX is made from the cognitive battery, so cognitive scores are never features (docs/tasks.md).

CREATE OR REPLACE TABLE candidates AS
SELECT
    v.visit_id AS sample_id,
    v.subject_id,
    v.RID,
    v.VISCODE,
    v.visit_time AS index_time,
    v.visit_time AS prediction_time,
    v.visit_time - to_days(CAST({{ lookback_days }} AS INTEGER)) AS window_start_time,
    v.dx_class AS diagnosis,
    v.gender,
    age_group(v.age) AS age_group,
    v.race,
    v.apoe4,
    v.age,
    v.visit_time IS NOT NULL AS incl_dated,
    v.dx_class IS NOT NULL AS incl_diagnosed
FROM visits AS v;
