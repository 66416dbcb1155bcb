-- structured_feature_list: the columns of structured.parquet, in order, and the modality each belongs to.
-- Depends on: nothing.
--
-- Fixed by definition so every ADNI build has the same schema. Cognitive scores (MMSE, ADAS, CDR-SB, RAVLT, FAQ,
-- MoCA, ECog, mPACC) and DX_bl are NOT here: DX is made from them, so they would hand the label to the model.
--   demographics  age at the visit, sex, years of education, Hispanic ethnicity, race, marital status, APOE4
--                 allele count (0/1/2; NaN when not genotyped);
--   mri           FreeSurfer volumes (mm^3) incl. intracranial volume, and whether the scan was at 3 T;
--   fdg_pet       FDG (mean SUVR over the ADNI meta-ROIs);
--   amyloid_pet   AV45 (florbetapir), PIB, FBB (florbetaben) SUVRs: different tracers and scales, NaN when not used;
--   csf           ABETA, TAU, PTAU (pg/mL) with their censoring flags (+1 above / -1 below the assay range).

CREATE OR REPLACE TABLE structured_feature_list AS
WITH lists AS (
    SELECT
        ['age', 'gender_F', 'gender_M', 'gender_unknown', 'education_years', 'hispanic',
         'race_white', 'race_black', 'race_asian', 'race_more_than_one', 'race_other', 'race_unknown',
         'marital_married', 'marital_divorced', 'marital_widowed', 'marital_never_married', 'marital_unknown',
         'apoe4_alleles'] AS demographics,
        ['Hippocampus', 'Ventricles', 'WholeBrain', 'Entorhinal', 'Fusiform', 'MidTemp', 'ICV',
         'field_strength_3t'] AS mri,
        ['FDG'] AS fdg_pet,
        ['AV45', 'PIB', 'FBB'] AS amyloid_pet,
        ['abeta', 'abeta_censored', 'tau', 'tau_censored', 'ptau', 'ptau_censored'] AS csf
)
SELECT CAST(k AS INTEGER) AS position, demographics[k] AS feature, 'demographics' AS modality
FROM lists, range(1, len(demographics) + 1) AS r(k)
UNION ALL SELECT CAST(100 + k AS INTEGER), mri[k], 'mri' FROM lists, range(1, len(mri) + 1) AS r(k)
UNION ALL SELECT CAST(200 + k AS INTEGER), fdg_pet[k], 'fdg_pet' FROM lists, range(1, len(fdg_pet) + 1) AS r(k)
UNION ALL SELECT CAST(300 + k AS INTEGER), amyloid_pet[k], 'amyloid_pet' FROM lists, range(1, len(amyloid_pet) + 1) AS r(k)
UNION ALL SELECT CAST(400 + k AS INTEGER), csf[k], 'csf' FROM lists, range(1, len(csf) + 1) AS r(k);
