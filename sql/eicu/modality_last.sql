-- modality_last: for each sample and each modality it has, the time of its last allowed observation.
-- Depends on: cohort, measurements, apache_values, code_events.
--
-- demographics: always present, known at unit admission (index_time). labs / vitals: the last measurement in the
-- window. apache: when its first-day values became final (apache_values.sql). codes: the last entry counted.
-- The builder turns this into has_<m>, <m>_time, pattern and n_observed; a modality the task does not allow is
-- dropped there.

CREATE OR REPLACE TABLE modality_last AS
SELECT sample_id, 'demographics' AS modality, index_time AS last_time FROM cohort
UNION ALL
SELECT sample_id, modality, max(charttime) FROM measurements GROUP BY sample_id, modality
UNION ALL
SELECT sample_id, 'apache', max(apache_time) FROM apache_values GROUP BY sample_id
UNION ALL
SELECT sample_id, 'codes', max(charttime) FROM code_events GROUP BY sample_id;
