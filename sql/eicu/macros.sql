-- macros: the synthetic clock and the category maps every eICU relation shares (not a relation; loaded first).
--
-- Clock. eICU publishes no dates: each event is a minute offset from the unit admission of its stay, the unit
-- admission itself is `-hospitaladmitoffset` minutes after the hospital admission, and the only calendar fact is
-- `hospitaldischargeyear`. The contract wants timestamps, so a hospital stay is placed on a synthetic calendar:
-- hospital admission at <hospitaldischargeyear>-01-01 <hospitaladmittime24> (1970 when the year is missing), and
-- an event at offset o of a unit stay at hospital admission + (o - hospitaladmitoffset) minutes. All unit stays of
-- one hospital stay share that clock, so their order and gaps are real; dates across hospital stays are not
-- comparable and the calendar date itself means nothing (only the year is real). The clock-of-day is real when
-- hospitaladmittime24 is present (unit admission then falls on unitadmittime24).

CREATE OR REPLACE MACRO eicu_hospital_admit_time(discharge_year, admit_time24) AS
    make_timestamp(CAST(coalesce(discharge_year, 1970) AS BIGINT), 1, 1,
                   coalesce(hour(admit_time24), 0), coalesce(minute(admit_time24), 0), 0.0);

-- Offsets (minutes) on the clock of a sample: `base` is the sample's unit admission time.
CREATE OR REPLACE MACRO eicu_at(base, offset_minutes) AS
    base + to_minutes(CAST(offset_minutes AS BIGINT));

-- Ages over 89 are pooled as the text "> 89" (HIPAA); they become 90 with age_over_89 set. Empty -> NULL.
-- Other text is rejected before any SQL runs (EICU.check_values).
CREATE OR REPLACE MACRO eicu_age(age) AS CASE
    WHEN trim(age) = '> 89' THEN 90
    WHEN regexp_full_match(trim(age), '[0-9]{1,3}') THEN CAST(trim(age) AS INTEGER)
    ELSE NULL
END;

-- eICU's own ethnicity values (patient.ethnicity); NULL and 'Other/Unknown' are both 'other_unknown'.
CREATE OR REPLACE MACRO ethnicity_group(ethnicity) AS CASE ethnicity
    WHEN 'Caucasian' THEN 'caucasian'
    WHEN 'African American' THEN 'african_american'
    WHEN 'Hispanic' THEN 'hispanic'
    WHEN 'Asian' THEN 'asian'
    WHEN 'Native American' THEN 'native_american'
    ELSE 'other_unknown'
END;

CREATE OR REPLACE MACRO gender_group(gender) AS CASE gender
    WHEN 'Female' THEN 'F'
    WHEN 'Male' THEN 'M'
    ELSE 'unknown'
END;

-- The eight unit types of eICU v2.0 (patient.unittype).
CREATE OR REPLACE MACRO unit_type_group(unittype) AS CASE unittype
    WHEN 'Med-Surg ICU' THEN 'med_surg_icu'
    WHEN 'MICU' THEN 'micu'
    WHEN 'SICU' THEN 'sicu'
    WHEN 'CCU-CTICU' THEN 'ccu_cticu'
    WHEN 'CSICU' THEN 'csicu'
    WHEN 'CTICU' THEN 'cticu'
    WHEN 'Cardiac ICU' THEN 'cardiac_icu'
    WHEN 'Neuro ICU' THEN 'neuro_icu'
    ELSE 'other'
END;

-- Where the patient came from into the unit: the usual triage groups (ED, theatre/recovery, ward, step-down,
-- another ICU, another hospital, direct admission).
CREATE OR REPLACE MACRO admit_source_group(src) AS CASE
    WHEN src IN ('Emergency Department', 'Chest Pain Center') THEN 'emergency'
    WHEN src IN ('Operating Room', 'Recovery Room', 'PACU') THEN 'operating_room'
    WHEN src IN ('Floor', 'Acute Care/Floor') THEN 'floor'
    WHEN src IN ('Step-Down Unit (SDU)', 'ICU to SDU') THEN 'step_down'
    WHEN src IN ('ICU', 'Other ICU') THEN 'icu'
    WHEN src = 'Other Hospital' THEN 'other_hospital'
    WHEN src = 'Direct Admit' THEN 'direct_admit'
    ELSE 'other'
END;

-- Feature-name fragment of a diagnosis / treatment category ('infectious diseases' -> infectious_diseases).
CREATE OR REPLACE MACRO code_category(path) AS CASE lower(trim(split_part(path, '|', 1)))
    WHEN 'cardiovascular' THEN 'cardiovascular'
    WHEN 'pulmonary' THEN 'pulmonary'
    WHEN 'neurologic' THEN 'neurologic'
    WHEN 'renal' THEN 'renal'
    WHEN 'gastrointestinal' THEN 'gastrointestinal'
    WHEN 'endocrine' THEN 'endocrine'
    WHEN 'infectious diseases' THEN 'infectious_diseases'
    WHEN 'hematology' THEN 'hematology'
    WHEN 'burns/trauma' THEN 'burns_trauma'
    WHEN 'toxicology' THEN 'toxicology'
    WHEN 'oncology' THEN 'oncology'
    WHEN 'surgery' THEN 'surgery'
    WHEN 'general' THEN 'general'
    WHEN 'transplant' THEN 'transplant'
    ELSE 'other'
END;

-- Organ system of an APACHE admission diagnosis ('admission diagnosis|All Diagnosis|<Non-operative|Operative>|
-- Diagnosis|<System>|<name>').
CREATE OR REPLACE MACRO admitdx_system(path) AS CASE split_part(path, '|', 5)
    WHEN 'Cardiovascular' THEN 'cardiovascular'
    WHEN 'Respiratory' THEN 'respiratory'
    WHEN 'Neurology' THEN 'neurologic'
    WHEN 'Neurologic' THEN 'neurologic'
    WHEN 'Gastrointestinal' THEN 'gastrointestinal'
    WHEN 'Metabolic/Endocrine' THEN 'metabolic_endocrine'
    WHEN 'Genitourinary' THEN 'genitourinary'
    WHEN 'Trauma' THEN 'trauma'
    WHEN 'Musculoskeletal/Skin' THEN 'musculoskeletal_skin'
    WHEN 'Hematology' THEN 'hematology'
    WHEN 'Transplant' THEN 'transplant'
    ELSE 'other'
END;
