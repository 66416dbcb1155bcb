-- modality_last: for each sample and each modality it has, the time of its last allowed observation.
-- Depends on: cohort, measurements, sample_keys, notes_out, images_out.
--
-- structured is present for every sample: demographics are known at the index event, so its time is the last
-- measurement in the window or, without any, the index time. timeseries needs at least one measurement.
-- Text modalities are <note_type>_note; cxr is the last allowed study. The builder turns this into the has_*,
-- *_time, pattern and n_observed columns of modalities.parquet.

CREATE OR REPLACE TABLE modality_last AS
WITH last_measurement AS (
    SELECT k.sample_id, m.last_time
    FROM (SELECT sample_key, max(charttime) AS last_time FROM measurements GROUP BY sample_key) AS m
    JOIN sample_keys AS k USING (sample_key)
)
SELECT c.sample_id, 'structured' AS modality, coalesce(m.last_time, c.index_time) AS last_time
FROM cohort AS c LEFT JOIN last_measurement AS m USING (sample_id)
UNION ALL
SELECT sample_id, 'timeseries', last_time FROM last_measurement
UNION ALL
SELECT sample_id, note_type || '_note', max(charttime) FROM notes_out GROUP BY sample_id, note_type
UNION ALL
SELECT sample_id, 'cxr', max(study_time) FROM images_out GROUP BY sample_id;
