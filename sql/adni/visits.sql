-- visits: one row per ADNIMERGE visit, with its diagnosis class, parsed measurements and which modality it holds.
-- Depends on: adnimerge, macros.
--
-- Visit time = EXAMDATE at midnight (ADNIMERGE has dates, not times). Age at the visit = AGE (the age at the
-- baseline visit in ADNIMERGE, constant across a participant's rows) + years since baseline (Years_bl, else
-- EXAMDATE - EXAMDATE_bl, else EXAMDATE - the participant's first EXAMDATE).
-- A modality is present at a visit when any of its columns has a value: mri (FreeSurfer volumes), fdg_pet (FDG),
-- amyloid_pet (AV45 florbetapir / PIB / FBB florbetaben SUVRs: different tracers, kept as separate features),
-- csf (ABETA, TAU, PTAU, censored values parsed by the macros). Cognitive scores are not read at all.

CREATE OR REPLACE TABLE visits AS
WITH base AS (
    SELECT
        a.*,
        CAST(a.EXAMDATE AS TIMESTAMP) AS visit_time,
        min(a.EXAMDATE) OVER (PARTITION BY a.RID) AS first_examdate
    FROM adnimerge AS a
)
SELECT
    CAST(b.RID AS VARCHAR) || '_' || trim(b.VISCODE) AS visit_id,
    b.RID AS subject_id,
    b.RID,
    trim(b.VISCODE) AS VISCODE,
    b.visit_time,
    dx_class(b.DX) AS dx_class,
    b.AGE + coalesce(b.Years_bl, datediff('day', b.EXAMDATE_bl, b.EXAMDATE) / 365.25,
                     datediff('day', b.first_examdate, b.EXAMDATE) / 365.25, 0.0) AS age,
    gender_group(b.PTGENDER) AS gender,
    race_group(b.PTRACCAT) AS race,
    CASE b.PTETHCAT WHEN 'Hisp/Latino' THEN 1.0 WHEN 'Not Hisp/Latino' THEN 0.0 END AS hispanic,
    marital_group(b.PTMARRY) AS marital,
    b.PTEDUCAT AS education_years,
    b.APOE4 AS apoe4_alleles,
    coalesce(CAST(CAST(b.APOE4 AS INTEGER) AS VARCHAR), 'unknown') AS apoe4,
    b.Hippocampus, b.Ventricles, b.WholeBrain, b.Entorhinal, b.Fusiform, b.MidTemp, b.ICV,
    CASE WHEN b.FLDSTRENG LIKE '3%' THEN 1.0 WHEN b.FLDSTRENG LIKE '1.5%' THEN 0.0 END AS field_strength_3t,
    b.FDG,
    b.AV45, b.PIB, b.FBB,
    csf_value(b.ABETA) AS abeta, csf_censored(b.ABETA) AS abeta_censored,
    csf_value(b.TAU) AS tau, csf_censored(b.TAU) AS tau_censored,
    csf_value(b.PTAU) AS ptau, csf_censored(b.PTAU) AS ptau_censored,
    coalesce(b.Hippocampus, b.Ventricles, b.WholeBrain, b.Entorhinal, b.Fusiform, b.MidTemp, b.ICV) IS NOT NULL
        AS has_mri,
    b.FDG IS NOT NULL AS has_fdg_pet,
    coalesce(b.AV45, b.PIB, b.FBB) IS NOT NULL AS has_amyloid_pet,
    coalesce(csf_value(b.ABETA), csf_value(b.TAU), csf_value(b.PTAU)) IS NOT NULL AS has_csf
FROM base AS b;
