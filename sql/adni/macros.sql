-- macros: diagnosis classes, censored CSF values and the groups every ADNI relation shares (not a relation).
--
-- Diagnosis: ADNIMERGE's DX is the clinical diagnosis AT the visit, made from the cognitive battery (MMSE, CDR,
-- logical memory, ...). Recent exports write CN / MCI / Dementia; older ones NL and transitions such as
-- 'MCI to Dementia', whose current state is the part after 'to'. Class index: CN 0, MCI 1, Dementia 2 (the order
-- of the task's `classes`). Other values are rejected before any SQL runs (ADNI.check_values).
-- CSF: the Elecsys / xMAP assays report values outside their measuring range as bounds ('>1700', '<200', '<8');
-- the number becomes the value and the direction a censoring flag (+1 above the upper limit, -1 below the lower,
-- 0 measured): dropping them would remove exactly the most abnormal patients.

CREATE OR REPLACE MACRO dx_class(dx) AS CASE trim(dx)
    WHEN 'CN' THEN 0 WHEN 'NL' THEN 0 WHEN 'MCI to NL' THEN 0 WHEN 'Dementia to NL' THEN 0
    WHEN 'MCI' THEN 1 WHEN 'NL to MCI' THEN 1 WHEN 'Dementia to MCI' THEN 1
    WHEN 'Dementia' THEN 2 WHEN 'AD' THEN 2 WHEN 'MCI to Dementia' THEN 2 WHEN 'NL to Dementia' THEN 2
    ELSE NULL
END;

CREATE OR REPLACE MACRO csf_value(v) AS
    TRY_CAST(trim(regexp_replace(trim(v), '^[<>]\s*', '')) AS DOUBLE);

CREATE OR REPLACE MACRO csf_censored(v) AS CASE
    WHEN v IS NULL OR trim(v) = '' THEN NULL
    WHEN starts_with(trim(v), '>') THEN 1.0
    WHEN starts_with(trim(v), '<') THEN -1.0
    ELSE 0.0
END;

-- Age bands of a memory-clinic population (ADNI enrols ages 55-90).
CREATE OR REPLACE MACRO age_group(age) AS CASE
    WHEN age IS NULL THEN 'unknown'
    WHEN age < 65 THEN '<65'
    WHEN age < 75 THEN '65-74'
    WHEN age < 85 THEN '75-84'
    ELSE '85+'
END;

CREATE OR REPLACE MACRO gender_group(g) AS CASE g WHEN 'Female' THEN 'F' WHEN 'Male' THEN 'M' ELSE 'unknown' END;

-- PTRACCAT values of ADNIMERGE; the small groups are pooled.
CREATE OR REPLACE MACRO race_group(r) AS CASE r
    WHEN 'White' THEN 'white'
    WHEN 'Black' THEN 'black'
    WHEN 'Asian' THEN 'asian'
    WHEN 'More than one' THEN 'more_than_one'
    WHEN 'Am Indian/Alaskan' THEN 'other'
    WHEN 'Hawaiian/Other PI' THEN 'other'
    ELSE 'unknown'
END;

CREATE OR REPLACE MACRO marital_group(m) AS CASE m
    WHEN 'Married' THEN 'married'
    WHEN 'Divorced' THEN 'divorced'
    WHEN 'Widowed' THEN 'widowed'
    WHEN 'Never married' THEN 'never_married'
    ELSE 'unknown'
END;
