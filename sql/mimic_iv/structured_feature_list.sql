-- structured_feature_list: the columns of structured.parquet, in order, fixed by definition (not by data).
-- Depends on: variable_map.
--
-- A fixed list keeps structured.parquet's schema identical across cohorts, releases and extracts, so a model
-- trained on one build can score another. Demographics come one-hot with every category of the macros' groups;
-- each variable contributes min / max / mean / last / count over the observation window.

CREATE OR REPLACE TABLE structured_feature_list AS
WITH demographic(feature) AS (
    VALUES ('age'), ('gender_F'), ('gender_M'),
           ('race_group_white'), ('race_group_black'), ('race_group_hispanic'), ('race_group_asian'),
           ('race_group_other'), ('race_group_unknown'),
           ('insurance_medicare'), ('insurance_medicaid'), ('insurance_private'), ('insurance_other'),
           ('insurance_unknown'),
           ('admission_type_emergency'), ('admission_type_urgent'), ('admission_type_elective'),
           ('admission_type_observation'), ('admission_type_other')
),
demographic_ordered AS (
    SELECT row_number() OVER () AS position, feature FROM demographic
),
stat(stat_position, stat) AS (
    VALUES (1, 'min'), (2, 'max'), (3, 'mean'), (4, 'last'), (5, 'count')
),
variables AS (
    SELECT DISTINCT position, variable FROM variable_map
)
SELECT CAST(position AS INTEGER) AS position, feature, 'structured' AS modality FROM demographic_ordered
UNION ALL
SELECT CAST(1000 + v.position * 10 + s.stat_position AS INTEGER), v.variable || '_' || s.stat, 'structured'
FROM variables AS v CROSS JOIN stat AS s;
