-- structured_features: (sample_id, feature, value) long form of structured.parquet.
-- Depends on: cohort, visits, modality_visit, structured_feature_list.
--
-- Demographics come from the sample's own visit (known at it); every other modality from the visit
-- modality_visit chose for it. Unmeasured columns stay NULL (a featurizer masks them), never imputed here.

CREATE OR REPLACE TABLE structured_features AS
WITH own AS (
    SELECT c.sample_id, v.*
    FROM cohort AS c JOIN visits AS v ON v.visit_id = c.sample_id
),
demographics AS (
    SELECT o.sample_id, f.feature,
           CASE
               WHEN f.feature = 'age' THEN o.age
               WHEN f.feature = 'education_years' THEN o.education_years
               WHEN f.feature = 'hispanic' THEN o.hispanic
               WHEN f.feature = 'apoe4_alleles' THEN o.apoe4_alleles
               WHEN f.feature IN ('gender_' || o.gender, 'race_' || o.race, 'marital_' || o.marital) THEN 1.0
               ELSE 0.0
           END AS value
    FROM own AS o CROSS JOIN structured_feature_list AS f
    WHERE f.modality = 'demographics'
),
chosen AS (
    SELECT mv.sample_id, mv.modality, v.*
    FROM modality_visit AS mv JOIN visits AS v ON v.visit_id = mv.source_visit_id
),
measured AS (
    SELECT sample_id, modality, item AS feature, value
    FROM (
        UNPIVOT (
            SELECT sample_id, modality,
                   Hippocampus, Ventricles, WholeBrain, Entorhinal, Fusiform, MidTemp, ICV, field_strength_3t,
                   FDG, AV45, PIB, FBB, abeta, abeta_censored, tau, tau_censored, ptau, ptau_censored
            FROM chosen
        )
        ON COLUMNS(* EXCLUDE (sample_id, modality)) INTO NAME item VALUE value
    )
)
SELECT d.sample_id, d.feature, d.value FROM demographics AS d
UNION ALL
SELECT m.sample_id, m.feature, CAST(m.value AS DOUBLE)
FROM measured AS m
JOIN structured_feature_list AS f ON f.feature = m.feature AND f.modality = m.modality;
