"""MIMIC-IV world, part 3: MIMIC-IV-Note (discharge, radiology) and MIMIC-CXR-JPG for one chunk.

Which items exist follows the ordering decisions drawn in mimic_population.py (missing not at random); where
they sit in time is chosen so the task rules of docs/tasks.md are exercised in both directions:

- discharge summary: charttime within +-3 h of dischtime (70 %), 3-24 h after (23 %), 24-72 h after (7 %,
  outside the readmission task's "dischtime + 24 h" rule);
- CXR: in ICU admissions the first study falls in [intime - 6 h, intime + 20 h] (inside every mortality window),
  then daily portable films after it -- mostly after the 24 h / 48 h prediction times; outpatient studies before
  the first admission and after the last discharge carry no hadm_id;
- other imaging reports (CT / US) make the radiology-note modality differ from the CXR one.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from medmodal.simulate import images, text
from medmodal.simulate.mimic_population import P_CXR_REPORTED, Population
from medmodal.simulate.scm import World, sigmoid
from medmodal.simulate.writer import DAY, HOUR, Writers, dt, nullable, ragged

NOTE_COLUMNS = ("note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text")
CXR_METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
CXR_SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
CXR_CHEXPERT_COLUMNS = ("subject_id", "study_id", *images.FINDINGS)
DICOM_SHARE = 0.15  # share of images written as .dcm instead of .jpg
# (finding, intercept, slope on the study's severity) -- the "present" probabilities of the CheXpert findings
FINDING_MODEL = (
    ("Consolidation", -1.6, 1.3),
    ("Edema", -2.0, 1.0),
    ("Pleural Effusion", -1.7, 1.0),
    ("Cardiomegaly", -1.4, 0.6),
    ("Atelectasis", -1.2, 0.7),
)
RARE = (
    ("Pneumothorax", 0.02),
    ("Fracture", 0.01),
    ("Lung Lesion", 0.02),
    ("Pleural Other", 0.01),
    ("Enlarged Cardiomediastinum", 0.03),
)


class ModalityWriter:
    """Writes note/ and cxr/ rows (and image files) chunk by chunk; carries running study ids."""

    def __init__(self, world: World, root: Path, writers: Writers, *, images: bool, image_size: int):
        self.world = world
        self.root = Path(root)
        self.writers = writers
        self.images = images
        self.image_size = image_size
        self.next_study_id = 600_000_000 + world.environment.index * 50_000_000

    def write_chunk(
        self,
        rng: np.random.Generator,
        pixel_rng: np.random.Generator,
        pop: Population,
        labs: dict[str, np.ndarray],
        problems: list[tuple[str, ...]],
        service: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Write one chunk; returns per-admission counts (n_cxr_studies, n_radiology_notes, has_discharge_note)."""
        rnd = random.Random(int(rng.integers(0, 2**63)))
        a, s = pop.adm, pop.subj
        m = len(a["sub"])
        c_marks = self.world.strengths.c_marks

        # ---- discharge summaries
        ds_rows = np.flatnonzero(a["order_discharge_note"])
        u_off = rng.random(len(ds_rows))
        off_h = np.where(
            u_off < 0.70,
            rng.uniform(-3, 3, len(ds_rows)),
            np.where(u_off < 0.93, rng.uniform(3, 24, len(ds_rows)), rng.uniform(24, 72, len(ds_rows))),
        )
        ds_time = (a["dischtime"][ds_rows] + (off_h * HOUR).astype(np.int64)) // 60 * 60
        ds_text = []
        for i in ds_rows:
            enc = text.Encounter(
                subject_age=int(a["age"][i]),
                gender=str(s["gender"][a["sub"][i]]),
                u=float(a["u"][i]),
                c=int(a["c"][i]),
                died=bool(a["died"][i]),
                icu=bool(a["icu"][i]),
                los_days=float((a["dischtime"][i] - a["admittime"][i]) / DAY),
                problems=problems[i],
                labs={k: float(v[i]) for k, v in labs.items()},
                discharge_location=str(a["discharge_location"][i]),
                service=str(service[i]),
            )
            ds_text.append(text.discharge_summary(rnd, enc, c_marks))
        discharge = pl.DataFrame(
            [
                pl.Series("subject_id", a["subject_id"][ds_rows]),
                pl.Series("hadm_id", a["hadm_id"][ds_rows]),
                pl.Series("note_type", ["DS"] * len(ds_rows), dtype=pl.Utf8),
                dt("charttime", ds_time),
                dt("storetime", ds_time + (rng.uniform(0.2, 8, len(ds_rows)) * HOUR).astype(np.int64) // 60 * 60),
                pl.Series("text", ds_text, dtype=pl.Utf8),
            ]
        )
        self.writers.write("note/discharge.csv.gz", _number_notes(discharge, "DS"))

        # ---- CXR studies: (admission row or -1, subject row, time, portable)
        study_adm, study_sub, study_t = self._schedule_cxr(rng, pop)
        n_st = len(study_t)
        portable = np.where(
            study_adm >= 0, a["icu"][np.maximum(study_adm, 0)] | (rng.random(n_st) < 0.5), rng.random(n_st) < 0.1
        )
        u_at = np.where(
            study_adm >= 0, a["u"][np.maximum(study_adm, 0)], self.world.strengths.rho * s["frailty"][study_sub]
        )
        in_icu = (study_adm >= 0) & a["icu"][np.maximum(study_adm, 0)]
        c_st = s["c"][study_sub]
        sev = self.world.strengths.u_signal * u_at + rng.normal(0, 0.5, n_st)
        study_id = self.next_study_id + np.arange(n_st)
        self.next_study_id += n_st
        subject_id = s["subject_id"][study_sub]

        chexpert = {f: np.full(n_st, np.nan) for f in images.FINDINGS}
        uncertain_all: list[set[str]] = [set() for _ in range(n_st)]
        for name, a0, b in FINDING_MODEL:
            present = rng.random(n_st) < sigmoid(a0 + b * sev)
            chexpert[name] = np.where(present, 1.0, np.where(rng.random(n_st) < 0.6, 0.0, np.nan))
        chexpert["Support Devices"] = np.where(
            rng.random(n_st) < np.where(in_icu, sigmoid(-0.3 + sev), 0.03), 1.0, np.nan
        )
        for name, p in RARE:
            chexpert[name] = np.where(rng.random(n_st) < p, 1.0, np.where(rng.random(n_st) < 0.3, 0.0, np.nan))
        cons = chexpert["Consolidation"] == 1.0
        chexpert["Pneumonia"] = np.where(cons & (rng.random(n_st) < 0.6), 1.0, np.where(cons, -1.0, np.nan))
        unsure = rng.random((n_st, len(images.FINDINGS))) < 0.12
        for j, f in enumerate(images.FINDINGS):  # CheXpert's uncertain label: "possible ..."
            if f not in ("Pneumonia", "No Finding", "Support Devices"):
                flip = unsure[:, j] & (chexpert[f] == 1.0)
                chexpert[f] = np.where(flip, -1.0, chexpert[f])
                for i in np.flatnonzero(flip):
                    uncertain_all[i].add(f)
        opacity = np.zeros(n_st, bool)
        for f in ("Consolidation", "Edema", "Atelectasis"):
            opacity |= np.isin(chexpert[f], (1.0, -1.0))
        chexpert["Lung Opacity"] = np.where(opacity, 1.0, np.nan)
        positive = np.zeros(n_st, bool)
        for f in images.FINDINGS:
            if f != "No Finding":
                positive |= np.isin(chexpert[f], (1.0, -1.0))
        chexpert["No Finding"] = np.where(positive, np.nan, 1.0)
        self.writers.write(
            "cxr/mimic-cxr-2.0.0-chexpert.csv.gz",
            pl.DataFrame(
                [pl.Series("subject_id", subject_id), pl.Series("study_id", study_id)]
                + [pl.Series(f, chexpert[f]).fill_nan(None) for f in images.FINDINGS]
            ),
        )

        # ---- images of each study: PA+LAT or AP (+ LAT) films
        n_img = 1 + (rng.random(n_st) < np.where(portable, 0.15, 0.9))
        img_st, img_pos = ragged(n_img)
        view = np.where(img_pos == 1, "LATERAL", np.where(portable[img_st], "AP", "PA"))
        words = rng.integers(0, 2**32, (len(img_st), 5), dtype=np.uint64)
        dicom_id = ["-".join(f"{int(w):08x}" for w in row) for row in words]
        as_dicom = rng.random(len(img_st)) < DICOM_SHARE
        dicom_variant = rng.integers(0, 4, len(img_st))
        st_time = study_t[img_st] + rng.integers(0, 3, len(img_st)) * 60
        ms = rng.integers(0, 1000, len(img_st))
        times = dt("t", st_time)
        date_int = times.dt.strftime("%Y%m%d").cast(pl.Int64)
        hms = (
            times.dt.hour().cast(pl.Int64) * 10000
            + times.dt.minute().cast(pl.Int64) * 100
            + times.dt.second().cast(pl.Int64)
        )
        study_time = hms.cast(pl.Float64) + pl.Series(ms / 1000.0)
        desc = np.where(portable[img_st], "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)")
        view_meaning = np.select([view == "PA", view == "AP"], ["postero-anterior", "antero-posterior"], "lateral")
        orient = np.where(portable[img_st], "Recumbent", "Erect")
        orient = np.where(rng.random(len(img_st)) < 0.05, None, orient)
        size = self.image_size
        self.writers.write(
            "cxr/mimic-cxr-2.0.0-metadata.csv.gz",
            pl.DataFrame(
                [
                    pl.Series("dicom_id", dicom_id, dtype=pl.Utf8),
                    pl.Series("subject_id", subject_id[img_st]),
                    pl.Series("study_id", study_id[img_st]),
                    pl.Series("PerformedProcedureStepDescription", desc, dtype=pl.Utf8),
                    pl.Series("ViewPosition", view, dtype=pl.Utf8),
                    pl.Series("Rows", np.full(len(img_st), size)),
                    pl.Series("Columns", np.full(len(img_st), size)),
                    date_int.alias("StudyDate"),
                    study_time.alias("StudyTime"),
                    pl.Series("ProcedureCodeSequence_CodeMeaning", desc, dtype=pl.Utf8),
                    pl.Series("ViewCodeSequence_CodeMeaning", view_meaning, dtype=pl.Utf8),
                    pl.Series("PatientOrientationCodeSequence_CodeMeaning", orient.tolist(), dtype=pl.Utf8),
                ]
            ),
        )
        split = np.array([_split_of(int(x)) for x in subject_id[img_st]], dtype=object)
        self.writers.write(
            "cxr/mimic-cxr-2.0.0-split.csv.gz",
            pl.DataFrame(
                [
                    pl.Series("dicom_id", dicom_id, dtype=pl.Utf8),
                    pl.Series("study_id", study_id[img_st]),
                    pl.Series("subject_id", subject_id[img_st]),
                    pl.Series("split", split, dtype=pl.Utf8),
                ]
            ),
        )
        if self.images:
            date_s = date_int.cast(pl.Utf8).to_list()
            for i in range(len(img_st)):
                st = img_st[i]
                sid = int(subject_id[st])
                folder = self.root / "cxr" / "files" / f"p{str(sid)[:2]}" / f"p{sid}" / f"s{int(study_id[st])}"
                px = images.render(
                    pixel_rng,
                    {f: chexpert[f][st] for f in images.FINDINGS},
                    c=int(c_st[st]),
                    c_marks=c_marks,
                    size=size,
                    lateral=view[i] == "LATERAL",
                )
                if as_dicom[i]:
                    images.write_dicom(
                        folder / f"{dicom_id[i]}.dcm",
                        px,
                        dicom_id=dicom_id[i],
                        subject_id=sid,
                        study_id=int(study_id[st]),
                        view=str(view[i]),
                        study_date=date_s[i],
                        study_time=f"{int(hms[i]):06d}.{int(ms[i]):03d}",
                        variant=int(dicom_variant[i]),
                    )
                else:
                    images.write_jpeg(folder / f"{dicom_id[i]}.jpg", px)

        # ---- radiology reports: most CXR studies, plus the other imaging ordered for the admission
        reported = rng.random(n_st) < P_CXR_REPORTED
        rr_sub, rr_adm, rr_t, rr_text = [], [], [], []
        for i in np.flatnonzero(reported):
            sub = study_sub[i]
            rr_sub.append(sub)
            rr_adm.append(study_adm[i])
            rr_t.append(study_t[i])
            rr_text.append(
                text.radiology_report(
                    rnd,
                    age=int(a["age"][study_adm[i]]) if study_adm[i] >= 0 else int(s["anchor_age"][sub]),
                    gender=str(s["gender"][sub]),
                    c=int(c_st[i]),
                    c_marks=c_marks,
                    portable=bool(portable[i]),
                    findings={f: chexpert[f][i] for f in images.FINDINGS},
                    uncertain=uncertain_all[i],
                )
            )
        oi_adm, oi_t = self._schedule_other_imaging(rng, pop)
        for i, t in zip(oi_adm, oi_t):
            rr_sub.append(a["sub"][i])
            rr_adm.append(i)
            rr_t.append(t)
            rr_text.append(
                text.other_imaging_report(
                    rnd,
                    age=int(a["age"][i]),
                    gender=str(s["gender"][a["sub"][i]]),
                    u=float(a["u"][i]),
                    c=int(a["c"][i]),
                    c_marks=c_marks,
                )
            )
        rr_sub_a, rr_adm_a = np.asarray(rr_sub, np.int64), np.asarray(rr_adm, np.int64)
        rr_t_a = np.asarray(rr_t, np.int64) // 60 * 60
        radiology = pl.DataFrame(
            [
                pl.Series("subject_id", s["subject_id"][rr_sub_a]),
                nullable("hadm_id", a["hadm_id"][np.maximum(rr_adm_a, 0)], rr_adm_a >= 0),
                pl.Series("note_type", ["RR"] * len(rr_t_a), dtype=pl.Utf8),
                dt("charttime", rr_t_a),
                dt("storetime", rr_t_a + (rng.uniform(0.5, 10, len(rr_t_a)) * HOUR).astype(np.int64) // 60 * 60),
                pl.Series("text", rr_text, dtype=pl.Utf8),
            ]
        )
        self.writers.write("note/radiology.csv.gz", _number_notes(radiology, "RR"))

        n_cxr = np.bincount(study_adm[study_adm >= 0], minlength=m)
        n_rr = np.bincount(rr_adm_a[rr_adm_a >= 0], minlength=m)
        return {"n_cxr_studies": n_cxr, "n_radiology_notes": n_rr}

    def _schedule_cxr(self, rng: np.random.Generator, pop: Population):
        a, s = pop.adm, pop.subj
        rows = np.flatnonzero(a["order_cxr"])
        icu = a["icu"][rows]
        admit, disch, intime, outtime = (
            a["admittime"][rows],
            a["dischtime"][rows],
            a["intime"][rows],
            a["outtime"][rows],
        )
        first_icu = np.maximum(intime + (rng.uniform(-6, 20, len(rows)) * HOUR).astype(np.int64), admit + 600)
        first_icu = np.minimum(first_icu, np.maximum(outtime - 600, intime))
        los_h = (disch - admit) / HOUR
        first_ward = admit + (np.minimum(rng.uniform(0.3, 24, len(rows)), 0.8 * los_h) * HOUR).astype(np.int64)
        first = np.where(icu, first_icu, first_ward)
        # daily portable films in the ICU after the first one (these fall after the 24 h / 48 h prediction times)
        n_daily = np.where(icu, np.maximum(0, (outtime - intime) // DAY), 0).astype(np.int64)
        own, pos = ragged(n_daily)
        t_daily = intime[own] + (pos + 1) * DAY + (rng.uniform(4, 10, len(own)) * HOUR).astype(np.int64)
        keep = (rng.random(len(own)) < 0.6) & (t_daily < outtime[own])
        second = rng.random(len(rows)) < np.where(icu, 0.0, 0.3)
        t_second = first + ((disch - first) * rng.uniform(0.2, 0.9, len(rows))).astype(np.int64)
        adm_idx = np.concatenate([rows, rows[own[keep]], rows[second]])
        t = np.concatenate([first, t_daily[keep], t_second[second]])
        # outpatient studies: before the first admission and after the last discharge, no hadm_id
        n_sub = len(s["k"])
        first_adm = np.full(n_sub, np.iinfo(np.int64).max)
        last_dis = np.zeros(n_sub, np.int64)
        np.minimum.at(first_adm, a["sub"], np.where(a["has_ed"], a["edregtime"], a["admittime"]))
        np.maximum.at(last_dis, a["sub"], a["dischtime"])
        after = np.flatnonzero(rng.random(n_sub) < 0.12)
        before = np.flatnonzero(rng.random(n_sub) < 0.08)
        t_out = np.concatenate(
            [
                last_dis[after] + (rng.uniform(2, 60, len(after)) * DAY).astype(np.int64),
                first_adm[before] - (rng.uniform(10, 300, len(before)) * DAY).astype(np.int64),
            ]
        )
        sub = np.concatenate([a["sub"][adm_idx], after, before])
        adm_all = np.concatenate([adm_idx, np.full(len(after) + len(before), -1)])
        t_all = np.concatenate([t, t_out]) // 60 * 60
        order = np.lexsort((t_all, sub))
        return adm_all[order], sub[order], t_all[order]

    def _schedule_other_imaging(self, rng: np.random.Generator, pop: Population):
        a = pop.adm
        rows = np.flatnonzero(a["order_other_imaging"])
        admit, disch, intime, outtime = (
            a["admittime"][rows],
            a["dischtime"][rows],
            a["intime"][rows],
            a["outtime"][rows],
        )
        first_icu = np.minimum(
            np.maximum(intime + (rng.uniform(-6, 20, len(rows)) * HOUR).astype(np.int64), admit + 600),
            np.maximum(outtime - 600, intime),
        )
        los_h = (disch - admit) / HOUR
        first_ward = admit + (np.minimum(rng.uniform(1, 36, len(rows)), 0.8 * los_h) * HOUR).astype(np.int64)
        first = np.where(a["icu"][rows], first_icu, first_ward)
        n_extra = rng.integers(0, 3, len(rows))
        own, _ = ragged(n_extra)
        t_extra = first[own] + ((disch[own] - first[own]) * rng.uniform(0.1, 0.95, len(own))).astype(np.int64)
        return np.concatenate([rows, rows[own]]), np.concatenate([first, t_extra])


def _number_notes(df: pl.DataFrame, kind: str) -> pl.DataFrame:
    """note_seq counts a subject's notes of one type in time order; note_id = '<subject_id>-<DS|RR>-<seq>'."""
    df = df.sort(["subject_id", "charttime"], maintain_order=True)
    # MIMIC-IV-Note sequence numbers do not start at 1 for a subject's first note in the release; mimic that
    start = (pl.col("subject_id") * 7919 % 23 + 1).cast(pl.Int64)
    df = df.with_columns((pl.int_range(pl.len()).over("subject_id") + start).alias("note_seq"))
    return df.with_columns(
        (pl.col("subject_id").cast(pl.Utf8) + f"-{kind}-" + pl.col("note_seq").cast(pl.Utf8)).alias("note_id")
    )


def _split_of(subject_id: int) -> str:
    """MIMIC-CXR's official split proportions (train 97.8 %, validate 0.8 %, test 1.4 %), fixed per subject."""
    h = zlib.crc32(str(subject_id).encode()) % 1000
    return "train" if h < 978 else ("validate" if h < 986 else "test")
