"""Leakage and consistency audits, run on the written cohort files of every build (any source).

They read only the outputs (cohort / modalities / notes / images / timeseries parquet) plus the manifest's
modality list and time rules, so they check what downstream stages will actually see, independently of the
SQL that produced it. Any failure raises one MedmodalError line; ``build_cohort`` then removes the half-built
directory.

Checks:
  * ``unique_sample_id`` / ``sorted_sample_id``: the row-order contract.
  * ``split_overlap``: no subject in two splits. Under a sample-level split protocol the user named (MUSE's
    random split by admission) it is a warning instead, returned in ``warnings`` and kept in the manifest.
  * ``notes_after_cutoff`` / ``images_after_cutoff``: no note or image later than prediction_time + the
    modality's grace (0 unless the task says otherwise, e.g. readmission's 24 h filing grace for notes);
    no note of a type whose modality the task does not allow.
  * ``measurements_after_prediction``: no hourly bin starting after prediction_time; no ``<m>_time`` of any
    modality later than prediction_time + grace (``structured_time`` / ``timeseries_time`` are the last
    measurement times, so this covers every measurement behind the aggregates).
  * ``mask_consistency``: has_<m> agrees with <m>_time, pattern and n_observed agree with the has_* bits,
    modalities.parquet has the cohort's rows in the cohort's order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from medmodal.cohort.runner import scrub
from medmodal.common import MedmodalError, console
from medmodal.contracts import SPLITS, n_observed_sql, pattern_sql, read_cohort_manifest


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _in_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _fail(check: str, path: Path, what: str, n: int, example: Any) -> MedmodalError:
    more = f" (e.g. {example})" if example is not None else ""
    return MedmodalError(f"audit '{check}' failed: {n} {what}{more}", path=path)


def run_audits(
    cohort_dir: str | Path,
    manifest: dict[str, Any],
    *,
    shown_as: str | Path | None = None,
    warnings: list[str] | None = None,
) -> list[str]:
    """Run every audit; return the names of the checks that passed (all of them, or raise). ``warnings`` receives
    the lines of checks the manifest says were waived on request (``split_overlap`` under a sample-level split).

    ``shown_as``: the folder errors name instead of ``cohort_dir`` - the build audits its temporary folder, which
    is gone by the time the user reads the message, so it names the output that was not written."""
    d = Path(cohort_dir)
    shown = Path(shown_as) if shown_as is not None else d
    suffix = " (build stopped; nothing written)" if shown_as is not None else ""
    modalities: list[str] = manifest["modalities"]
    kinds: dict[str, str] = manifest["modality_kinds"]
    grace = {m: float(manifest["time_rules"].get(m, {}).get("grace_hours", 0.0)) for m in modalities}
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW cohort AS SELECT * FROM read_parquet({_q(d / 'cohort.parquet')})")
        con.execute(f"CREATE VIEW modalities AS SELECT * FROM read_parquet({_q(d / 'modalities.parquet')})")
        con.execute(f"CREATE VIEW notes AS SELECT * FROM read_parquet({_q(d / 'notes.parquet')})")
        con.execute(f"CREATE VIEW images AS SELECT * FROM read_parquet({_q(d / 'images.parquet')})")
        con.execute(f"CREATE VIEW timeseries AS SELECT * FROM read_parquet({_q(d / 'timeseries.parquet')})")
        passed: list[str] = []

        def check(name: str, path: Path, what: str, sql: str) -> None:
            n, example = con.execute(f"SELECT count(*), min(example) FROM ({sql})").fetchone()
            if n:
                raise _fail(name, shown / path.name, what + suffix, n, example)
            passed.append(name)

        cohort_path = d / "cohort.parquet"
        check(
            "unique_sample_id",
            cohort_path,
            "duplicated sample_id",
            "SELECT sample_id AS example FROM cohort GROUP BY sample_id HAVING count(*) > 1",
        )
        check(
            "sorted_sample_id",
            cohort_path,
            "rows out of sample_id order",
            "SELECT sample_id AS example FROM (SELECT sample_id, lag(sample_id) OVER () AS prev FROM cohort) "
            "WHERE prev IS NOT NULL AND prev >= sample_id",
        )
        overlap = (
            "SELECT CAST(subject_id AS VARCHAR) AS example FROM cohort GROUP BY subject_id "
            "HAVING count(DISTINCT split) > 1"
        )
        protocol = manifest.get("split_protocol") or {}
        if protocol.get("subject_level", True):
            check("split_overlap", cohort_path, "subjects in more than one split", overlap)
        else:
            n = con.execute(f"SELECT count(*) FROM ({overlap})").fetchone()[0]
            line = (
                f"split_overlap: {n} subjects in more than one split: split protocol '{protocol.get('name')}' is "
                "not subject-level (asked for; metrics are not patient-disjoint)"
            )
            console.print(f"[yellow]warning[/yellow]: {line}", soft_wrap=True)
            if warnings is not None:
                warnings.append(line)
        check(
            "split_values",
            cohort_path,
            f"rows with a split other than {'/'.join(SPLITS)}",
            f"SELECT sample_id AS example FROM cohort WHERE split IS NULL OR split NOT IN {_in_list(SPLITS)}",
        )

        # Notes: one modality per note_type (<type>_note); a type the task does not allow is a leak too.
        note_grace = (
            " ".join(
                f"WHEN '{m[: -len('_note')]}' THEN {grace[m]}"
                for m in modalities
                if kinds[m] == "text" and m.endswith("_note")
            )
            or "WHEN NULL THEN NULL"
        )  # no text modality (eICU, ADNI): every note is a leak
        notes_path = d / "notes.parquet"
        check(
            "notes_in_cohort",
            notes_path,
            "notes of samples not in the cohort",
            "SELECT n.note_id AS example FROM notes n ANTI JOIN cohort c USING (sample_id)",
        )
        check(
            "notes_after_cutoff",
            notes_path,
            "notes after prediction_time + grace or of a type the task forbids",
            f"""SELECT n.note_id AS example FROM notes n JOIN cohort c USING (sample_id)
                  WHERE (CASE n.note_type {note_grace or ""} ELSE NULL END) IS NULL
                     OR n.charttime IS NULL
                     OR n.charttime > c.prediction_time
                        + to_microseconds(CAST((CASE n.note_type {note_grace or ""} ELSE 0 END) * 3600e6 AS BIGINT))""",
        )

        image_mods = [m for m in modalities if kinds[m] == "image"]
        images_path = d / "images.parquet"
        check(
            "images_in_cohort",
            images_path,
            "images of samples not in the cohort",
            "SELECT i.dicom_id AS example FROM images i ANTI JOIN cohort c USING (sample_id)",
        )
        image_grace = max((grace[m] for m in image_mods), default=0.0)
        check(
            "images_after_cutoff",
            images_path,
            "images after prediction_time + grace" + ("" if image_mods else " (task allows no image modality)"),
            f"""SELECT i.dicom_id AS example FROM images i JOIN cohort c USING (sample_id)
                  WHERE {"FALSE" if image_mods else "TRUE"} OR i.study_time IS NULL
                     OR i.study_time > c.prediction_time + to_microseconds(CAST({image_grace} * 3600e6 AS BIGINT))""",
        )

        ts_path = d / "timeseries.parquet"
        cohort_cols = {r[0] for r in con.execute("DESCRIBE cohort").fetchall()}
        if "window_start_time" in cohort_cols:
            check(
                "measurements_after_prediction",
                ts_path,
                "hourly bins starting after prediction_time or before hour 0",
                """SELECT t.sample_id AS example FROM timeseries t JOIN cohort c USING (sample_id)
                     WHERE t.hour < 0 OR c.window_start_time + to_hours(CAST(t.hour AS BIGINT)) > c.prediction_time""",
            )

        mod_path = d / "modalities.parquet"
        check(
            "modalities_rows",
            mod_path,
            "rows not matching cohort.parquet's sample_id order",
            """SELECT coalesce(m.sample_id, c.sample_id) AS example
                 FROM (SELECT sample_id, row_number() OVER () AS r FROM modalities) m
                 FULL JOIN (SELECT sample_id, row_number() OVER () AS r FROM cohort) c USING (r)
                 WHERE m.sample_id IS DISTINCT FROM c.sample_id""",
        )
        for m in modalities:
            check(
                f"{m}_time_after_cutoff",
                mod_path,
                f"samples whose {m}_time is after prediction_time + grace",
                f"""SELECT m.sample_id AS example FROM modalities m JOIN cohort c USING (sample_id)
                      WHERE m."{m}_time" > c.prediction_time
                            + to_microseconds(CAST({grace[m]} * 3600e6 AS BIGINT))""",
            )
        bits, count = pattern_sql(modalities), n_observed_sql(modalities)
        consistent = " AND ".join(f'("has_{m}" = ("{m}_time" IS NOT NULL))' for m in modalities) or "TRUE"
        check(
            "mask_consistency",
            mod_path,
            "rows whose has_*, *_time, pattern and n_observed disagree",
            f"SELECT sample_id AS example FROM modalities WHERE NOT ({consistent}) "
            f"OR pattern <> {bits} OR n_observed <> {count}",
        )
        return passed
    except duckdb.Error as err:  # a hand-edited or truncated cohort file (audit_cohort_dir): one line, no values
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MedmodalError(f"audits could not read the cohort files ({scrub(first)})", path=shown) from None
    finally:
        con.close()


def audit_cohort_dir(cohort_dir: str | Path) -> list[str]:
    """Re-run the audits on an existing cohort directory (as ``medmodal cohort report`` could)."""
    return run_audits(cohort_dir, read_cohort_manifest(cohort_dir))
