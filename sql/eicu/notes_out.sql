-- notes_out: empty. eICU's note table holds structured note fields (notepath / notevalue), not free text, and no
-- eICU task here has a text modality; the relation exists because the builder writes notes.parquet for every source.
-- Depends on: nothing.

CREATE OR REPLACE TABLE notes_out AS
SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS VARCHAR) AS note_id, CAST(NULL AS VARCHAR) AS note_type,
       CAST(NULL AS TIMESTAMP) AS charttime, CAST(NULL AS VARCHAR) AS text
WHERE false;
