-- stays: one row per unit stay, with the patient's demographics, the stay's place on the synthetic clock and its
-- rank among the patient's stays. Depends on: patient, macros.
--
-- subject_id = uniquepid (one person across hospital stays); splits are by it.
-- unit_admit_minute = minutes from hospital admission to this unit admission (-hospitaladmitoffset): it orders the
-- unit stays of one hospital stay. `unitvisitnumber` alone is not reliable for that (in the demo it decreases
-- along the clock for 4 consecutive pairs of stays, and two stays can share an admission minute).
-- stay_rank = order of the patient's stays, "first" = rank 1:
--   1. hospitaldischargeyear (the only calendar fact eICU gives),
--   2. patienthealthsystemstayid -- an ASSUMPTION: eICU gives no admission date, so hospital stays of one patient
--      discharged in the same year have no known order; the id is the only deterministic tie-break,
--   3. unit_admit_minute (exact within a hospital stay), 4. unitvisitnumber, 5. patientunitstayid.

CREATE OR REPLACE TABLE stays AS
WITH clocked AS (
    SELECT
        p.*,
        eicu_age(p.age) AS age_years,
        -p.hospitaladmitoffset AS unit_admit_minute,
        eicu_hospital_admit_time(p.hospitaldischargeyear, p.hospitaladmittime24) AS hospital_admit_time
    FROM patient AS p
)
SELECT
    c.patientunitstayid,
    c.patienthealthsystemstayid,
    c.uniquepid AS subject_id,
    c.hospitalid,
    c.hospitaldischargeyear,
    c.unitvisitnumber,
    c.unit_admit_minute,
    eicu_at(c.hospital_admit_time, c.unit_admit_minute) AS unit_admit_time,
    c.unitdischargeoffset,
    c.unitdischargestatus,
    c.unitdischargelocation,
    c.hospitaldischargeoffset,
    c.hospitaldischargestatus,
    CAST(c.age_years AS DOUBLE) AS age,
    coalesce(trim(c.age) = '> 89', false) AS age_over_89,
    age_group(c.age_years) AS age_group,
    gender_group(c.gender) AS gender,
    ethnicity_group(c.ethnicity) AS ethnicity,
    unit_type_group(c.unittype) AS unit_type,
    admit_source_group(c.unitadmitsource) AS admit_source,
    c.admissionheight,
    c.admissionweight,
    row_number() OVER (
        PARTITION BY c.uniquepid
        ORDER BY c.hospitaldischargeyear NULLS LAST, c.patienthealthsystemstayid, c.unit_admit_minute,
                 c.unitvisitnumber, c.patientunitstayid
    ) AS stay_rank
FROM clocked AS c;
