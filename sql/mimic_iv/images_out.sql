-- images_out: the MIMIC-CXR images of every study the task allows, with the absolute path of each file.
-- Depends on: cohort, cxr_metadata. Parameters: allow_cxr, cxr_files_root, cxr_files_glob.
--
-- Study time = StudyDate (YYYYMMDD) + StudyTime (HHMMSS.fff, leading zeros dropped by the float), on the same
-- shifted calendar as MIMIC-IV, so studies are matched to a sample by subject_id and time inside
-- [window_start_time, prediction_time]. Every image (view) of an allowed study is kept, with its ViewPosition,
-- so the featurizer can choose a view policy. Path: files/p<first 2 digits>/p<subject_id>/s<study_id>/<dicom_id>
-- + the extension found on disk (.jpg for MIMIC-CXR-JPG, .dcm for MIMIC-CXR; a tree may mix both). An image
-- whose file is not on disk keeps the .jpg path; the builder counts and reports those.

CREATE OR REPLACE TABLE images_out AS
WITH studies AS (
    SELECT
        m.dicom_id,
        m.subject_id,
        m.study_id,
        m.ViewPosition AS view,
        make_timestamp(
            CAST(m.StudyDate // 10000 AS BIGINT),
            CAST((m.StudyDate // 100) % 100 AS BIGINT),
            CAST(m.StudyDate % 100 AS BIGINT),
            CAST(floor(m.StudyTime / 10000) AS BIGINT),
            CAST(floor(m.StudyTime / 100) % 100 AS BIGINT),
            m.StudyTime - floor(m.StudyTime / 100) * 100
        ) AS study_time
    FROM cxr_metadata AS m
    WHERE {{ allow_cxr }} AND m.StudyDate IS NOT NULL AND m.StudyTime IS NOT NULL
),
image_files AS (
    SELECT
        regexp_extract(file, '/s([0-9]+)/([^/]+)\.([A-Za-z]+)$', 2) AS dicom_id,
        file,
        CASE lower(regexp_extract(file, '\.([A-Za-z]+)$', 1)) WHEN 'jpg' THEN 1 WHEN 'dcm' THEN 2 ELSE 3 END AS preference
    FROM glob({{ cxr_files_glob }})
    WHERE lower(regexp_extract(file, '\.([A-Za-z]+)$', 1)) IN ('jpg', 'jpeg', 'dcm', 'png')
),
best_file AS (
    SELECT dicom_id, arg_min(file, preference) AS file FROM image_files GROUP BY dicom_id
)
SELECT
    c.sample_id,
    s.dicom_id,
    s.study_id,
    s.view,
    s.study_time,
    coalesce(
        f.file,
        {{ cxr_files_root }} || '/p' || left(CAST(s.subject_id AS VARCHAR), 2) || '/p' || CAST(s.subject_id AS VARCHAR)
            || '/s' || CAST(s.study_id AS VARCHAR) || '/' || s.dicom_id || '.jpg'
    ) AS path
FROM studies AS s
LEFT JOIN best_file AS f USING (dicom_id)
JOIN cohort AS c
  ON c.subject_id = s.subject_id
 AND s.study_time >= c.window_start_time
 AND s.study_time <= c.prediction_time;
