-- images_out: empty. ADNI's MRI / PET enter as the derived measures ADNIMERGE carries (FreeSurfer volumes, SUVRs);
-- the scans themselves are separate LONI downloads not linked here. The relation exists because the builder writes
-- images.parquet for every source. Depends on: nothing.

CREATE OR REPLACE TABLE images_out AS
SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS VARCHAR) AS dicom_id, CAST(NULL AS BIGINT) AS study_id,
       CAST(NULL AS VARCHAR) AS view, CAST(NULL AS TIMESTAMP) AS study_time, CAST(NULL AS VARCHAR) AS path
WHERE false;
