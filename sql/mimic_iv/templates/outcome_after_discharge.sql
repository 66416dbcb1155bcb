-- template outcome_after_discharge: an outcome within a horizon after hospital discharge (docs/tasks.md,
-- "Templates"). A task of this shape is a YAML with `template: outcome_after_discharge` and no SQL.
-- Depends on: admission_demographics, admissions, icustays, patients.
-- Parameters: outcome (admission | icu_stay | death), horizon_days, sample_unit (subject | admission),
-- note_grace_hours.
--
-- Index = the subject's first hospital admission (earliest admittime, ties by hadm_id) chosen before any
-- exclusion, or every admission when sample_unit = 'admission'. Prediction at dischtime from the whole admission.
-- Label column `outcome`:
--   admission: another admission with admittime in (dischtime, dischtime + horizon_days];
--   icu_stay:  an ICU stay with intime in (dischtime, dischtime + horizon_days];
--   death:     patients.dod (a DATE) in [date(dischtime), date(dischtime + horizon_days)] - dod is day-precise, so a
--              death later on the discharge day counts; in-hospital deaths leave at `alive_at_discharge` first.
-- Inclusion columns (a task lists the ones it applies, in its order):
--   incl_adult; incl_alive_at_discharge (hospital_expire_flag is not 1); incl_dod_not_before_discharge (a dod
--   before the discharge day of a living discharge is a record error); incl_followed_up (MIMIC-IV finds
--   out-of-hospital deaths up to one year after the subject's LAST discharge: the window is followed up when it
--   ends by then or the death fell inside it - always true for horizon_days <= 365);
--   incl_no_death_without_outcome (not dead inside the window without the outcome: a competing death).

CREATE OR REPLACE TABLE candidates AS
WITH ranked AS (
    SELECT d.*, row_number() OVER (PARTITION BY d.subject_id ORDER BY d.admittime, d.hadm_id) AS admission_rank
    FROM admission_demographics AS d
),
indexed AS (
    SELECT r.*, r.dischtime + to_days(CAST({{ horizon_days }} AS INTEGER)) AS horizon_end
    FROM ranked AS r
    WHERE r.admission_rank = 1 OR {{ sample_unit }} = 'admission'
),
events AS (  -- the outcome's events: (subject_id, hadm_id, event_time)
    SELECT subject_id, hadm_id, admittime AS event_time FROM admissions WHERE {{ outcome }} = 'admission'
    UNION ALL
    SELECT subject_id, CAST(NULL AS BIGINT) AS hadm_id, intime AS event_time FROM icustays
    WHERE {{ outcome }} = 'icu_stay'
),
hit AS (
    SELECT DISTINCT i.hadm_id
    FROM indexed AS i
    JOIN events AS e
      ON e.subject_id = i.subject_id
     AND e.hadm_id IS DISTINCT FROM i.hadm_id
     AND e.event_time > i.dischtime
     AND e.event_time <= i.horizon_end
),
last_discharge AS (
    SELECT subject_id, max(dischtime) AS last_dischtime FROM admissions GROUP BY subject_id
),
flags AS (
    SELECT
        i.*,
        p.dod,
        coalesce(p.dod >= CAST(i.dischtime AS DATE) AND p.dod <= CAST(i.horizon_end AS DATE), false) AS died_in_window,
        h.hadm_id IS NOT NULL AS event_in_window,
        l.last_dischtime
    FROM indexed AS i
    LEFT JOIN patients AS p ON p.subject_id = i.subject_id
    LEFT JOIN hit AS h ON h.hadm_id = i.hadm_id
    LEFT JOIN last_discharge AS l ON l.subject_id = i.subject_id
)
SELECT
    CAST(f.hadm_id AS VARCHAR) AS sample_id,
    f.subject_id,
    f.hadm_id,
    f.admittime AS index_time,
    f.dischtime AS prediction_time,
    f.admittime AS window_start_time,
    CAST(CASE WHEN {{ outcome }} = 'death' THEN f.died_in_window ELSE f.event_in_window END AS TINYINT) AS outcome,
    f.gender,
    f.race_group,
    f.insurance,
    age_group(age_at(f.anchor_age, f.anchor_year, f.admittime)) AS age_group,
    CAST(age_at(f.anchor_age, f.anchor_year, f.admittime) AS DOUBLE) AS age,
    f.admission_type,
    coalesce(age_at(f.anchor_age, f.anchor_year, f.admittime) >= 18, false) AS incl_adult,
    f.hospital_expire_flag IS DISTINCT FROM 1 AS incl_alive_at_discharge,
    (f.dod IS NULL OR f.dod >= CAST(f.dischtime AS DATE)) AS incl_dod_not_before_discharge,
    (f.died_in_window OR CAST(f.horizon_end AS DATE) <= CAST(f.last_dischtime AS DATE) + 365) AS incl_followed_up,
    NOT (f.died_in_window AND NOT f.event_in_window AND {{ outcome }} <> 'death') AS incl_no_death_without_outcome,
    f.hadm_id AS _note_hadm_id,
    f.dischtime + to_hours(CAST({{ note_grace_hours }} AS BIGINT)) AS _note_end_time
FROM flags AS f;
