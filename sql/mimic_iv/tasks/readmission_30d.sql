-- candidates (task readmission_30d): each subject's FIRST hospital admission, with its labels and time rules.
-- Depends on: admission_demographics, admissions, icustays. Parameters: readmission_days, icu_days,
-- note_grace_hours, sample_unit (from cohort/tasks/readmission_30d.yaml).
--
-- Index = earliest admittime, ties broken by hadm_id, chosen BEFORE any exclusion: a subject whose first
-- admission is paediatric or ends in death is excluded, never replaced by a later admission (that would select
-- patients who survived their first stay and bias the readmission rate). sample_unit = 'admission' makes every
-- admission an index event instead (the PyHealth / ACES convention); splits stay by subject.
-- Prediction is made at discharge (prediction_time = dischtime) from the whole admission.
-- Labels look strictly after discharge: another admission with admittime in (dischtime, dischtime + 30 d], and
-- an ICU stay with intime in (dischtime, dischtime + 90 d]; an ICU stay inside the index admission is not an
-- outcome. Notes: MIMIC-IV-Note files discharge summaries shortly after dischtime, so notes of the index
-- admission (matched by hadm_id) count up to dischtime + note_grace_hours; radiology reports with a NULL hadm_id
-- are attached by subject and time inside [admittime, dischtime].

CREATE OR REPLACE TABLE candidates AS
WITH ranked AS (
    SELECT d.*, row_number() OVER (PARTITION BY d.subject_id ORDER BY d.admittime, d.hadm_id) AS admission_rank
    FROM admission_demographics AS d
),
first_admission AS (
    SELECT * FROM ranked WHERE admission_rank = 1 OR {{ sample_unit }} = 'admission'
),
readmitted AS (
    SELECT DISTINCT f.hadm_id
    FROM first_admission AS f
    JOIN admissions AS o
      ON o.subject_id = f.subject_id
     AND o.hadm_id <> f.hadm_id
     AND o.admittime > f.dischtime
     AND o.admittime <= f.dischtime + to_days(CAST({{ readmission_days }} AS INTEGER))
),
icu_after AS (
    SELECT DISTINCT f.hadm_id
    FROM first_admission AS f
    JOIN icustays AS i
      ON i.subject_id = f.subject_id
     AND i.intime > f.dischtime
     AND i.intime <= f.dischtime + to_days(CAST({{ icu_days }} AS INTEGER))
)
SELECT
    CAST(f.hadm_id AS VARCHAR) AS sample_id,
    f.subject_id,
    f.hadm_id,
    f.admittime AS index_time,
    f.dischtime AS prediction_time,
    f.admittime AS window_start_time,
    CAST(r.hadm_id IS NOT NULL AS TINYINT) AS readmission,
    CAST(i.hadm_id IS NOT NULL AS TINYINT) AS icu_admission,
    f.gender,
    f.race_group,
    f.insurance,
    age_group(age_at(f.anchor_age, f.anchor_year, f.admittime)) AS age_group,
    CAST(age_at(f.anchor_age, f.anchor_year, f.admittime) AS DOUBLE) AS age,
    f.admission_type,
    coalesce(age_at(f.anchor_age, f.anchor_year, f.admittime) >= 18, false) AS incl_adult,
    f.hospital_expire_flag IS DISTINCT FROM 1 AS incl_alive_at_discharge,
    f.hadm_id AS _note_hadm_id,
    f.dischtime + to_hours(CAST({{ note_grace_hours }} AS BIGINT)) AS _note_end_time
FROM first_admission AS f
LEFT JOIN readmitted AS r ON r.hadm_id = f.hadm_id
LEFT JOIN icu_after AS i ON i.hadm_id = f.hadm_id;
