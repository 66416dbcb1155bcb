-- modality_visit: for each sample and each measured modality, the visit whose values it uses.
-- Depends on: cohort, visits. Parameters: allow_mri, allow_fdg_pet, allow_amyloid_pet, allow_csf.
--
-- Time rule (the same for every ADNI task): the modality's values at the sample's own visit or, when it was not
-- measured then, at the participant's most recent earlier visit with EXAMDATE in [window_start_time,
-- prediction_time] (window = lookback_days). All columns of a modality come from that ONE visit, so e.g. the
-- volumes of an MRI are never mixed across scans. Ties on EXAMDATE prefer the sample's own visit, then VISCODE.
-- Nothing after prediction_time (the visit date) can enter.

CREATE OR REPLACE TABLE modality_visit AS
WITH present AS (
    SELECT visit_id, subject_id, VISCODE, visit_time, 'mri' AS modality FROM visits WHERE has_mri AND {{ allow_mri }}
    UNION ALL
    SELECT visit_id, subject_id, VISCODE, visit_time, 'fdg_pet' FROM visits WHERE has_fdg_pet AND {{ allow_fdg_pet }}
    UNION ALL
    SELECT visit_id, subject_id, VISCODE, visit_time, 'amyloid_pet' FROM visits
    WHERE has_amyloid_pet AND {{ allow_amyloid_pet }}
    UNION ALL
    SELECT visit_id, subject_id, VISCODE, visit_time, 'csf' FROM visits WHERE has_csf AND {{ allow_csf }}
)
SELECT c.sample_id, p.modality, p.visit_id AS source_visit_id, p.visit_time AS source_time
FROM cohort AS c
JOIN present AS p
  ON p.subject_id = c.subject_id
 AND p.visit_time >= c.window_start_time
 AND p.visit_time <= c.prediction_time
QUALIFY row_number() OVER (
    PARTITION BY c.sample_id, p.modality
    ORDER BY p.visit_time DESC, (p.visit_id = c.sample_id) DESC, p.VISCODE
) = 1;
