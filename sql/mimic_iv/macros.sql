-- macros: the category maps every MIMIC-IV relation shares (not a relation; loaded first).
--
-- Why grouped: MIMIC-IV's `race` has ~33 free-form values and `admission_type` 9; subgroup metrics and one-hot
-- features need a handful of stable groups whose list does not depend on which values a given extract
-- happens to contain. Lists follow the common MIMIC practice (WHITE*, BLACK*, HISPANIC*/SOUTH AMERICAN, ASIAN*);
-- refusals and unknowns are kept apart from "other" because they are themselves informative.
-- `insurance` is 'Medicare' / 'Medicaid' / 'Other' in v2.2 and adds 'Private' and 'No charge' in v3.x, so the
-- groups cover both releases. age_group comes from sql/common/macros.sql;
-- anchor_age is capped at 91 in MIMIC-IV.

CREATE OR REPLACE MACRO race_group(race) AS CASE
    WHEN race IS NULL THEN 'unknown'
    WHEN upper(race) LIKE 'WHITE%' OR upper(race) = 'PORTUGUESE' THEN 'white'
    WHEN upper(race) LIKE 'BLACK%' THEN 'black'
    WHEN upper(race) LIKE 'HISPANIC%' OR upper(race) = 'SOUTH AMERICAN' THEN 'hispanic'
    WHEN upper(race) LIKE 'ASIAN%' THEN 'asian'
    WHEN upper(race) IN ('UNKNOWN', 'UNABLE TO OBTAIN', 'PATIENT DECLINED TO ANSWER') THEN 'unknown'
    ELSE 'other'
END;

CREATE OR REPLACE MACRO insurance_group(insurance) AS CASE
    WHEN insurance IS NULL OR trim(insurance) = '' THEN 'unknown'
    WHEN lower(insurance) = 'medicare' THEN 'medicare'
    WHEN lower(insurance) = 'medicaid' THEN 'medicaid'
    WHEN lower(insurance) = 'private' THEN 'private'
    ELSE 'other'
END;

CREATE OR REPLACE MACRO admission_type_group(admission_type) AS CASE
    WHEN admission_type IN ('EW EMER.', 'DIRECT EMER.') THEN 'emergency'
    WHEN admission_type = 'URGENT' THEN 'urgent'
    WHEN admission_type IN ('ELECTIVE', 'SURGICAL SAME DAY ADMISSION') THEN 'elective'
    WHEN admission_type LIKE '%OBSERVATION%' THEN 'observation'
    ELSE 'other'
END;

-- Age at an event = anchor_age + (year of the event - anchor_year)  (the task definitions' rule).
CREATE OR REPLACE MACRO age_at(anchor_age, anchor_year, event_time) AS
    anchor_age + (year(event_time) - anchor_year);

