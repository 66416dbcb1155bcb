-- admission_demographics: one row per hospital admission with the patient's demographics attached.
-- Depends on: admissions, patients, macros.
--
-- Demographics are what is known at admission: sex and anchor-based age from patients, race / insurance /
-- admission type as recorded on the admission row (they can change between admissions of one patient, so they
-- are taken per admission, not per patient). Age itself is computed by each task at its own index event.

CREATE OR REPLACE TABLE admission_demographics AS
SELECT
    a.subject_id,
    a.hadm_id,
    a.admittime,
    a.dischtime,
    a.deathtime,
    a.hospital_expire_flag,
    p.gender,
    p.anchor_age,
    p.anchor_year,
    race_group(a.race) AS race_group,
    insurance_group(a.insurance) AS insurance,
    admission_type_group(a.admission_type) AS admission_type
FROM admissions AS a
JOIN patients AS p USING (subject_id);
