-- candidates (cohorts built from a MEDS label file, e.g. ACES output): one sample per label row.
-- Depends on: meds_labels (subject_id, prediction_time, meds_label; registered by cohort/meds_import.py), patients,
-- admission_demographics, icustays. Parameters: window_hours, window_from_admission.
--
-- A label row says who and when, nothing else, so it is linked to the raw data by time: the linked admission is
-- the latest one that began at or before prediction_time (the admission containing it when there is one, else
-- the last one before it). hadm_id / stay_id are set only when the prediction time lies inside that admission /
-- an ICU stay. Window = [prediction_time - window_hours, prediction_time], or [admittime, prediction_time] of the
-- linked admission; index_time = that admittime, when demographics (sex, race, insurance, admission type as
-- recorded on that admission) become known. Age is at the prediction time.
-- Notes and images are linked by subject and time only (_note_hadm_id NULL) and end at prediction_time
-- (_note_end_time), so nothing after the prediction time enters, whatever the label means.
-- _subject_known / _in_record let the importer report subjects missing from patients and prediction times
-- outside [first admittime, last dischtime] as errors; every label row is kept here.

CREATE OR REPLACE TABLE candidates AS
WITH record AS (
    SELECT subject_id,
           min(admittime) AS record_start,
           max(dischtime) AS record_end
    FROM admissions
    GROUP BY subject_id
),
linked AS (
    SELECT l.subject_id, l.prediction_time, d.hadm_id, d.admittime, d.dischtime,
           row_number() OVER (
               PARTITION BY l.subject_id, l.prediction_time ORDER BY d.admittime DESC, d.hadm_id DESC
           ) AS admission_rank
    FROM meds_labels AS l
    JOIN admission_demographics AS d
      ON d.subject_id = l.subject_id
     AND d.admittime <= l.prediction_time
),
admission AS (
    SELECT * FROM linked WHERE admission_rank = 1
),
stay AS (
    SELECT l.subject_id, l.prediction_time, arg_max(s.stay_id, (s.intime, s.stay_id)) AS stay_id
    FROM meds_labels AS l
    JOIN icustays AS s
      ON s.subject_id = l.subject_id
     AND l.prediction_time BETWEEN s.intime AND s.outtime
    GROUP BY ALL
),
rows AS (
    SELECT
        l.subject_id,
        l.prediction_time,
        l.meds_label,
        a.hadm_id AS linked_hadm_id,
        a.admittime,
        a.dischtime,
        s.stay_id,
        p.subject_id IS NOT NULL AS subject_known,
        r.record_start,
        r.record_end
    FROM meds_labels AS l
    LEFT JOIN patients AS p ON p.subject_id = l.subject_id
    LEFT JOIN admission AS a ON a.subject_id = l.subject_id AND a.prediction_time = l.prediction_time
    LEFT JOIN stay AS s ON s.subject_id = l.subject_id AND s.prediction_time = l.prediction_time
    LEFT JOIN record AS r ON r.subject_id = l.subject_id
)
SELECT
    CAST(x.subject_id AS VARCHAR) || '_' || strftime(x.prediction_time, '%Y%m%d%H%M%S')
        || CASE WHEN microsecond(x.prediction_time) % 1000000 = 0 THEN ''
                ELSE '_' || lpad(CAST(microsecond(x.prediction_time) % 1000000 AS VARCHAR), 6, '0') END AS sample_id,
    x.subject_id,
    CASE WHEN x.prediction_time <= x.dischtime THEN x.linked_hadm_id END AS hadm_id,
    x.stay_id,
    x.admittime AS index_time,
    x.prediction_time,
    CASE WHEN {{ window_from_admission }} THEN x.admittime
         ELSE x.prediction_time - to_microseconds(CAST({{ window_hours }} * 3600e6 AS BIGINT)) END AS window_start_time,
    x.meds_label,
    d.gender,
    d.race_group,
    d.insurance,
    age_group(age_at(d.anchor_age, d.anchor_year, x.prediction_time)) AS age_group,
    CAST(age_at(d.anchor_age, d.anchor_year, x.prediction_time) AS DOUBLE) AS age,
    d.admission_type,
    x.subject_known AS _subject_known,
    coalesce(x.prediction_time BETWEEN x.record_start AND x.record_end AND x.admittime IS NOT NULL, false) AS _in_record,
    x.record_start AS _record_start,
    x.record_end AS _record_end,
    CAST(NULL AS BIGINT) AS _note_hadm_id,
    x.prediction_time AS _note_end_time
FROM rows AS x
LEFT JOIN admission_demographics AS d ON d.hadm_id = x.linked_hadm_id;
