-- notes_out: the discharge summaries and radiology reports each sample may see, under the task's time rule.
-- Depends on: cohort, discharge, radiology. Parameters: allow_discharge_note, allow_radiology_note.
--
-- Two ways a note belongs to a sample (the task SQL sets the per-sample bounds):
--  * by admission: cohort._note_hadm_id set (readmission) -> notes with that hadm_id and
--    charttime <= _note_end_time (dischtime + the filing grace), however early they were charted;
--  * by time: notes of the subject with charttime in [window_start_time, min(prediction_time, _note_end_time)],
--    used when the task links by time (mortality) and for radiology reports whose hadm_id is NULL.
-- The two branches are disjoint (a note has a matching hadm_id or is linked by time, never both), so no DISTINCT
-- over long texts is needed. Empty texts are dropped: nothing to embed, and they would mark the modality present.
-- "Empty" = nothing but the space characters trim() removes (Unicode Zs; not tabs or newlines), tested with a
-- regex that stops at the first other character: length(trim(text)) copied every note, twice (once per branch),
-- which cost more than parsing the note files.

CREATE OR REPLACE TABLE notes_out AS
WITH notes AS (
    SELECT note_id, subject_id, hadm_id, charttime, text, 'discharge' AS note_type
    FROM discharge WHERE {{ allow_discharge_note }}
    UNION ALL
    SELECT note_id, subject_id, hadm_id, charttime, text, 'radiology' AS note_type
    FROM radiology WHERE {{ allow_radiology_note }}
),
usable AS (
    SELECT * FROM notes
    WHERE charttime IS NOT NULL AND text IS NOT NULL AND regexp_matches(text, '[^\p{Zs}]')
),
by_admission AS (
    SELECT c.sample_id, n.note_id, n.note_type, n.charttime, n.text
    FROM usable AS n
    JOIN cohort AS c
      ON c._note_hadm_id IS NOT NULL
     AND n.hadm_id = c._note_hadm_id
     AND n.charttime <= c._note_end_time
),
by_time AS (
    SELECT c.sample_id, n.note_id, n.note_type, n.charttime, n.text
    FROM usable AS n
    JOIN cohort AS c
      ON n.subject_id = c.subject_id
     AND (c._note_hadm_id IS NULL OR n.hadm_id IS NULL)
     AND n.charttime >= c.window_start_time
     AND n.charttime <= least(c.prediction_time, c._note_end_time)
)
SELECT sample_id, CAST(note_id AS VARCHAR) AS note_id, note_type, charttime, text
FROM (SELECT * FROM by_admission UNION ALL SELECT * FROM by_time);
