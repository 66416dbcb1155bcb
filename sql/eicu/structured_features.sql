-- structured_features: (sample_id, feature, value) long form of structured.parquet.
-- Depends on: cohort, measurements, apache_values, code_events, structured_feature_list.
--
-- labs: per variable over the window min, max, mean, last (latest time; ties by value, so reruns agree) and count;
-- a variable never measured has count 0 and NULL statistics ("not measured" is information, not imputed here).
-- Means use fsum (compensated summation) so parallel scans give the same bits on every run.
-- apache: the value as recorded (NULL where eICU wrote -1). codes: number of DISTINCT entries per category (a
-- diagnosis re-entered at several offsets counts once) and 0/1 admission-diagnosis flags; 0 when none.
-- demographics: one-hot against the fixed category lists; height / weight as recorded at admission.

CREATE OR REPLACE TABLE structured_features AS
WITH lab_stats AS (
    SELECT
        sample_id,
        variable,
        min(value) AS "min",
        max(value) AS "max",
        fsum(value) / count(value) AS "mean",
        last(value ORDER BY offset_min, value) AS "last",
        CAST(count(value) AS DOUBLE) AS "count"
    FROM measurements
    WHERE modality = 'labs'
    GROUP BY sample_id, variable
),
lab_long AS (
    SELECT sample_id, variable || '_' || stat AS feature, value
    FROM (UNPIVOT lab_stats ON "min", "max", "mean", "last", "count" INTO NAME stat VALUE value)
),
zero_counts AS (
    SELECT c.sample_id, f.feature, 0.0 AS value
    FROM cohort AS c CROSS JOIN structured_feature_list AS f
    WHERE (f.modality = 'labs' AND f.feature LIKE '%\_count' ESCAPE '\') OR f.modality = 'codes'
),
codes AS (
    SELECT sample_id, feature,
           CASE WHEN feature LIKE 'admitdx\_%' ESCAPE '\' THEN max(CAST(positive AS DOUBLE))
                ELSE CAST(count(DISTINCT item) FILTER (WHERE positive) AS DOUBLE) END AS value
    FROM code_events
    GROUP BY sample_id, feature
),
demographics AS (
    SELECT c.sample_id, f.feature,
           CASE
               WHEN f.feature = 'age' THEN c.age
               WHEN f.feature = 'age_over_89' THEN CAST(c.age_over_89 AS DOUBLE)
               WHEN f.feature = 'admission_height' THEN c._admission_height
               WHEN f.feature = 'admission_weight' THEN c._admission_weight
               WHEN f.feature = 'hours_since_hospital_admit' THEN c._unit_admit_minute / 60.0
               WHEN f.feature = 'gender_' || c.gender THEN 1.0
               WHEN f.feature = 'ethnicity_' || c.ethnicity THEN 1.0
               WHEN f.feature = 'unit_type_' || c.unit_type THEN 1.0
               WHEN f.feature = 'admit_source_' || c._admit_source THEN 1.0
               ELSE 0.0
           END AS value
    FROM cohort AS c
    CROSS JOIN structured_feature_list AS f
    WHERE f.modality = 'demographics'
)
SELECT sample_id, feature, max(value) AS value
FROM (
    SELECT * FROM lab_long
    UNION ALL SELECT * FROM zero_counts
    UNION ALL SELECT * FROM codes
    UNION ALL SELECT sample_id, feature, value FROM apache_values
    UNION ALL SELECT * FROM demographics
)
GROUP BY sample_id, feature;
