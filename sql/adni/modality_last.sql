-- modality_last: for each sample and each modality it has, the date of the visit its values come from.
-- Depends on: cohort, modality_visit.
--
-- demographics: always present, known at the visit (index_time). The measured modalities: the EXAMDATE of the
-- visit modality_visit chose (the sample's own or an earlier one), never after prediction_time.

CREATE OR REPLACE TABLE modality_last AS
SELECT sample_id, 'demographics' AS modality, index_time AS last_time FROM cohort
UNION ALL
SELECT sample_id, modality, source_time FROM modality_visit;
