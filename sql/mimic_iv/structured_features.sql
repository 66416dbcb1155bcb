-- structured_features: (sample_id, feature, value) long form of structured.parquet.
-- Depends on: cohort, measurements, sample_keys, variables, structured_feature_list.
--
-- Per variable over the window: min, max, mean, last (latest charttime; ties by the larger value, so reruns
-- agree; arg_max rather than an ORDER BY aggregate, which would buffer every group in memory) and count. A variable never measured has count 0 and NULL statistics: "not measured" is information the model
-- may use, so it is not imputed here. Means use fsum (compensated summation) so parallel scans give the same
-- bits on every run. Demographics are one-hot against the fixed category lists.
-- Grouped by the integer keys of measurements; the three parts below are disjoint (a variable's statistics, the
-- zero count of a variable a sample never had, the demographics), so no grouping over the long form is needed.

CREATE OR REPLACE TABLE structured_features AS
WITH stats AS (
    SELECT
        sample_key,
        variable_key,
        min(value) AS "min",
        max(value) AS "max",
        fsum(value) / count(value) AS "mean",
        arg_max(value, (charttime, value)) AS "last",
        CAST(count(value) AS DOUBLE) AS "count"
    FROM measurements
    GROUP BY sample_key, variable_key
),
stats_long AS (
    UNPIVOT stats ON "min", "max", "mean", "last", "count" INTO NAME stat VALUE value
),
never_measured AS (
    SELECT k.sample_id, v.variable || '_count' AS feature, 0.0 AS value
    FROM sample_keys AS k
    CROSS JOIN variables AS v
    ANTI JOIN stats AS s ON s.sample_key = k.sample_key AND s.variable_key = v.variable_key
),
demographics AS (
    SELECT c.sample_id, f.feature,
           CASE
               WHEN f.feature = 'age' THEN c.age
               WHEN f.feature = 'gender_' || c.gender THEN 1.0
               WHEN f.feature = 'race_group_' || c.race_group THEN 1.0
               WHEN f.feature = 'insurance_' || c.insurance THEN 1.0
               WHEN f.feature = 'admission_type_' || c.admission_type THEN 1.0
               ELSE 0.0
           END AS value
    FROM cohort AS c
    CROSS JOIN structured_feature_list AS f
    WHERE f.position < 1000
)
SELECT k.sample_id, v.variable || '_' || s.stat AS feature, s.value
FROM stats_long AS s
JOIN sample_keys AS k USING (sample_key)
JOIN variables AS v USING (variable_key)
UNION ALL SELECT * FROM never_measured
UNION ALL SELECT * FROM demographics;
