-- macros shared by every source (not a relation; run before each source's own sql/<source>/macros.sql, which
-- may replace one of them where its population needs it, as ADNI does with its memory-clinic age bands).
--
-- Age groups: the usual adult bands for subgroup metrics; NULL ages stay 'unknown' rather than joining a band.

CREATE OR REPLACE MACRO age_group(age) AS CASE
    WHEN age IS NULL THEN 'unknown'
    WHEN age < 18 THEN '<18'
    WHEN age < 40 THEN '18-39'
    WHEN age < 60 THEN '40-59'
    WHEN age < 80 THEN '60-79'
    ELSE '80+'
END;
