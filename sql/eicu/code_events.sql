-- code_events: the diagnosis, treatment and APACHE admission-diagnosis entries each sample may see.
-- Depends on: cohort, diagnosis, treatment, admissiondx, macros. Parameter: allow_codes.
--
-- Time rule: an entry counts when its offset (when it was entered) is at or before prediction time, with no lower
-- bound -- entries made before the unit admission (negative offsets) describe the same hospital stay.
-- `activeupondischarge` is never read: it says whether the problem was still active at unit discharge, which is
-- known only then (a leak for any prediction before discharge).
-- Each entry maps to a feature of a fixed vocabulary (structured_feature_list.sql): diagnosis and treatment paths
-- by their top-level category (dx_<category>, tx_<category>); admission diagnoses by operative status, elective
-- surgery and organ system. `item` is the full path, so features can count distinct entries.

CREATE OR REPLACE TABLE code_events AS
WITH entries AS (
    SELECT patientunitstayid, diagnosisoffset AS offset_min, 'dx_' || code_category(diagnosisstring) AS feature,
           diagnosisstring AS item
    FROM diagnosis WHERE diagnosisstring IS NOT NULL
    UNION ALL
    SELECT patientunitstayid, treatmentoffset, 'tx_' || code_category(treatmentstring), treatmentstring
    FROM treatment WHERE treatmentstring IS NOT NULL
    UNION ALL
    SELECT patientunitstayid, admitdxenteredoffset,
           CASE
               WHEN admitdxpath LIKE 'admission diagnosis|All Diagnosis|%' THEN 'admitdx_system_' || admitdx_system(admitdxpath)
               WHEN admitdxpath LIKE 'admission diagnosis|Elective|%' THEN 'admitdx_elective'
               WHEN admitdxpath LIKE 'admission diagnosis|Was the patient admitted from the O.R.%' THEN 'admitdx_operative'
           END,
           admitdxpath
    FROM admissiondx
    WHERE admitdxpath IS NOT NULL
),
flagged AS (
    SELECT e.*,
           -- yes/no questions set their flag only when answered yes; a 'No' is still an entry (modality present)
           CASE WHEN e.feature IN ('admitdx_elective', 'admitdx_operative') THEN e.item LIKE '%|Yes' ELSE true END
               AS positive
    FROM entries AS e
    WHERE e.feature IS NOT NULL
)
SELECT c.sample_id, f.offset_min, eicu_at(c.index_time, f.offset_min) AS charttime, f.feature, f.item, f.positive
FROM flagged AS f
JOIN cohort AS c ON c.patientunitstayid = f.patientunitstayid
WHERE {{ allow_codes }} AND f.offset_min IS NOT NULL AND f.offset_min <= c._prediction_offset;
