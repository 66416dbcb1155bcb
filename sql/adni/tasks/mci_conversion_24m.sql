-- candidates (task mci_conversion_24m): visits with an MCI diagnosis; label: Dementia within 24 months.
-- Depends on: visits. Parameters: horizon_months (24), visit_window_days (60), lookback_days.
--
-- Unit = visit with DX = MCI (every such visit of a participant, splits by RID). Prediction at the visit.
-- Conversion (label 1): a later visit of the participant diagnosed Dementia with EXAMDATE in
-- (t, t + 24 months + visit_window_days]. Non-conversion (label 0): no such visit AND a later visit diagnosed
-- CN or MCI with EXAMDATE >= t + 24 months - visit_window_days, i.e. known dementia-free at 24 months.
-- visit_window_days absorbs scheduling: the month-24 visit happens some weeks before or after 24 months.
-- Everything else is censored and excluded: no follow-up to 24 months (dropped out, or data not yet released),
-- and dementia first seen only after 24 months + window with no dementia-free visit at >= 24 months (the
-- conversion happened somewhere in the gap, before or after 24 months: interval-censored).
-- Visits without a diagnosis never count as follow-up. Reversion after conversion is ignored (label stays 1).

CREATE OR REPLACE TABLE candidates AS
WITH mci AS (
    SELECT v.*,
           v.visit_time + to_months(CAST({{ horizon_months }} AS INTEGER)) AS horizon_time,
           to_days(CAST({{ visit_window_days }} AS INTEGER)) AS slack
    FROM visits AS v
),
outcome AS (
    SELECT
        m.visit_id,
        bool_or(o.dx_class = 2 AND o.visit_time <= m.horizon_time + m.slack) AS converted,
        bool_or(o.dx_class IN (0, 1) AND o.visit_time >= m.horizon_time - m.slack) AS followed
    FROM mci AS m
    JOIN visits AS o
      ON o.subject_id = m.subject_id
     AND o.visit_time > m.visit_time
     AND o.dx_class IS NOT NULL
    GROUP BY m.visit_id
)
SELECT
    m.visit_id AS sample_id,
    m.subject_id,
    m.RID,
    m.VISCODE,
    m.visit_time AS index_time,
    m.visit_time AS prediction_time,
    m.visit_time - to_days(CAST({{ lookback_days }} AS INTEGER)) AS window_start_time,
    CASE WHEN coalesce(o.converted, false) THEN 1 WHEN coalesce(o.followed, false) THEN 0 END AS mci_conversion,
    m.gender,
    age_group(m.age) AS age_group,
    m.race,
    m.apoe4,
    m.age,
    m.visit_time IS NOT NULL AS incl_dated,
    coalesce(m.dx_class = 1, false) AS incl_mci_at_visit,
    coalesce(o.converted OR o.followed, false) AS incl_not_censored
FROM mci AS m
LEFT JOIN outcome AS o USING (visit_id);
