-- notes_out: empty. ADNIMERGE has no free text; the relation exists because the builder writes notes.parquet for
-- every source. Depends on: nothing.

CREATE OR REPLACE TABLE notes_out AS
SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS VARCHAR) AS note_id, CAST(NULL AS VARCHAR) AS note_type,
       CAST(NULL AS TIMESTAMP) AS charttime, CAST(NULL AS VARCHAR) AS text
WHERE false;
