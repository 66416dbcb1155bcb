"""`medmodal report PATH --out page.html` on real outputs: the MIMIC-IV demo cohort, a trained toy run (and its
`evaluate` output on another cohort), and a shift-benchmark folder written by benchmarks/shift_report.py's own
functions from synthetic predictions. Each page is checked for its content against the files it reads, for escaping and
for self-containment, and opened in headless Chromium (skipped with the reason where Chromium is absent)."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.common import MedmodalError, write_json
from medmodal.report import detect_kind, write_report
from medmodal.report import figures as F
from medmodal.report.curves import pr_with_band, reliability, roc_with_band, wilson

FAST = {"batch_size": 64, "lr": 3e-3, "progress": False, "backbone_config": {"hidden": 16}, "epochs": 2, "seed": 0}
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, mimic_demo, toy, one_torch_thread) -> dict[str, Path]:
    from medmodal.benchmarks import shift_report as SR
    from medmodal.benchmarks.shift import QUICK
    from medmodal.cohort import build_cohort
    from medmodal.models.evaluate import evaluate
    from medmodal.models.toy import write_toy_cohort
    from medmodal.models.train import train

    root = tmp_path_factory.mktemp("report")
    cohort = build_cohort("mimic_iv", mimic_demo, "readmission_30d", root / "demo_cohort")
    toy_cohort, toy_store = toy
    run = train(toy_cohort, toy_store, root / "dfd", backbone="late_fusion", framework="dfd", n_boot=200, **FAST)
    other = write_toy_cohort(root / "other", root / "other_store", n=200, seed=5)
    ev = evaluate(run, other, root / "other_store", out=root / "eval_other", n_boot=100, device="cpu")
    # the shift benchmark's folder, written by benchmarks/shift_report.py's own functions (paired bootstrap,
    # results table, markdown, figure) from synthetic predictions: the real worlds take minutes to simulate
    bench = root / "bench"
    cfg = dataclasses.replace(QUICK, methods=("erm", "dfd"))
    rng = np.random.default_rng(0)
    cells = []
    for scoring in ("id", *cfg.mechanisms):
        per: dict[str, list] = {"erm": [], "dfd": []}
        for w in cfg.worlds:
            y = (rng.random(300) < 0.3).astype(float)
            weights = SR._weights(300, cfg.n_boot, seed=w)  # one resample of the world for both methods
            for m, signal in (("erm", 0.4), ("dfd", 0.7)):
                per[m].append([SR.boot_metrics(weights, y, signal * y + rng.random(300))])
        for m in per:
            pairs = [{"a": a, "b": b} for a, b in zip(per[m], per["erm"])]
            cells.append(
                {
                    "c_outcome": cfg.c_outcome[0],
                    "scoring": scoring,
                    "method": m,
                    "variant": "selected",
                    "vs_erm": SR.paired_bootstrap(pairs, cfg.n_boot),
                }
            )
    summary = {
        "labels": ["readmission_30d", "icu_admission_90d"],
        "primary": "readmission_30d",
        "selection": {},
        "cells": cells,
        "oracle": {f"c{cfg.c_outcome[0]:g}": {s: {"auroc": 0.74, "auprc": 0.4} for s in ("id", *cfg.mechanisms)}},
        "n": {s: {"n": 300, "n_pos": 90} for s in ("id", *cfg.mechanisms)},
        "config": asdict(cfg),
    }
    write_json(bench / "summary.json", summary)
    SR.results_table(summary).write_csv(bench / "results.csv")
    (bench / "benchmark.md").write_text(SR.markdown(summary))
    SR.plot(summary, bench / "shift.png")
    return {"cohort": cohort, "run": run, "eval": ev, "bench": root / "bench", "root": root}


@pytest.fixture(scope="module")
def pages(inputs, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pages")
    tsne = {"color_by": "gender", "split": "all", "max_points": 100, "iterations": 250}
    written = {
        "cohort": write_report(inputs["cohort"], out / "cohort.html"),
        "run": write_report(inputs["run"], out / "run.html", n_boot=50, tsne=tsne),
        "eval": write_report(inputs["eval"], out / "eval.html", n_boot=50),
        "bench": write_report(inputs["bench"], out / "bench.html"),
    }
    assert [k for _, k in written.values()] == ["cohort", "run", "run", "benchmark"]
    return {name: path for name, (path, _) in written.items()}


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMG.findall(page)]


def _text(page: str) -> str:
    """What a reader sees: tags and inline images out, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", page))))


# ---------------------------------------------------------------------------------------------- content


def test_cohort_page_shows_what_the_cohort_files_say(inputs, pages):
    page = pages["cohort"].read_text()
    text = _text(page)
    man = json.loads((inputs["cohort"] / "manifest.json").read_text())
    for anchor in ("summary", "attrition", "availability", "patterns", "prevalence", "rules", "provenance"):
        assert f'id="{anchor}"' in page
    for r in pl.read_parquet(inputs["cohort"] / "attrition.parquet").iter_rows(named=True):
        assert r["step"] in text and f"{r['n_samples']:,}" in text
    # every raw file hash, every audit and every time rule of the manifest is on the page
    for fp in man["raw_files"].values():
        if fp:
            assert fp["hash"] in text
    for audit in man["audits_passed"]:
        assert audit in text
    assert man["time_rules"]["discharge_note"]["rule"] in text
    # the label rate of the commonest pattern with its Wilson interval, recomputed here
    df = pl.read_parquet(inputs["cohort"] / "cohort.parquet").join(
        pl.read_parquet(inputs["cohort"] / "modalities.parquet"), on="sample_id"
    )
    top = df.group_by("pattern").len().sort("len", descending=True)["pattern"][0]
    sub = df.filter(pl.col("pattern") == top)["readmission_30d"].drop_nulls()
    r, lo, hi = wilson(int(sub.sum()), sub.len())
    assert f"{100 * r:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({int(sub.sum())}/{sub.len()})" in text
    assert len(_images(page)) == 4  # funnel, availability, UpSet, prevalence


def test_run_page_shows_the_stored_metrics_curves_groups_and_streams(inputs, pages):
    page = pages["run"].read_text()
    text = _text(page)
    metrics = json.loads((inputs["run"] / "metrics.json").read_text())
    auroc = metrics["tasks"]["mortality"]["test"]["overall"]["auroc"]
    assert f"{auroc['value']:.3f} [{auroc['ci_low']:.3f}, {auroc['ci_high']:.3f}]" in text
    for pattern in metrics["tasks"]["mortality"]["test"]["by_pattern"]:
        assert pattern in text
    for anchor in ("training", "metrics", "curves", "groups", "streams"):
        assert f'id="{anchor}"' in page
    assert "gender decodability (AUROC)" in text  # the t-SNE section from models/report.py's computation
    # training curves, 2 tasks x (ROC/PR/calibration), 2 tasks x (pattern + each subgroup) forests, t-SNE
    n_sub = len(metrics["tasks"]["mortality"]["test"].get("by_subgroup", {}))
    assert len(_images(page)) == 1 + 2 + 2 * (1 + n_sub) + 1


def test_evaluate_output_page_names_the_external_cohort(inputs, pages):
    text = _text(pages["eval"].read_text())
    metrics = json.loads((inputs["eval"] / "metrics.json").read_text())
    assert metrics["cohort"]["cohort_id"] in text and "split 'all'" in text
    assert "No training history here" in text


def test_benchmark_page_has_every_mechanism_and_the_paired_differences_to_erm(inputs, pages):
    from medmodal.report.benchmark_page import read_benchmark

    b = read_benchmark(inputs["bench"])
    summary = json.loads((inputs["bench"] / "summary.json").read_text())
    assert b.meta["splits"] == ["id", *summary["config"]["mechanisms"]]
    want = next(c for c in summary["cells"] if c["method"] == "dfd" and c["scoring"] == "outcome_shift")
    want = want["vs_erm"]["auroc"]
    d = b.diffs.filter((pl.col("metric") == "auroc") & (pl.col("split") == "outcome_shift"))
    assert d["framework"].to_list() == ["dfd"]  # erm has no difference to itself
    assert (d["value"][0], d["ci_low"][0], d["ci_high"][0]) == (want["delta"], want["ci_low"], want["ci_high"])
    assert want["ci_low"] < want["delta"] < want["ci_high"] and want["delta"] > 0  # dfd's scores carry more signal
    text = _text(pages["bench"].read_text())
    assert "Difference to erm on the same samples" in text and f"{want['delta']:.3f}" in text


def test_user_data_is_escaped_and_note_text_never_read(inputs, tmp_path):
    d = tmp_path / "cohort"
    shutil.copytree(inputs["cohort"], d)
    man = json.loads((d / "manifest.json").read_text())
    man["task_definition"]["description"] = "<script>alert('x')</script> & <b>bold</b>"
    (d / "manifest.json").write_text(json.dumps(man))
    secret = "PATIENT-NOTE-TEXT-7f3a"
    pl.DataFrame(
        {"sample_id": ["1"], "note_id": ["n1"], "note_type": ["discharge"], "charttime": [None], "text": [secret]}
    ).write_parquet(d / "notes.parquet")
    page = write_report(d, tmp_path / "page.html")[0].read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;" in page
    assert secret not in page


def test_report_refuses_bad_paths_with_one_line(inputs, tmp_path):
    with pytest.raises(MedmodalError, match="not found"):
        detect_kind(tmp_path / "nope")
    with pytest.raises(MedmodalError, match="is a file"):
        detect_kind(inputs["cohort"] / "manifest.json")
    with pytest.raises(MedmodalError, match="not a cohort, run or benchmark folder"):
        detect_kind(tmp_path)
    with pytest.raises(
        MedmodalError, match=r"holds 5 report-able folders \(bench, demo_cohort, dfd, eval_other, other\)"
    ):
        detect_kind(inputs["cohort"].parent)
    broken = tmp_path / "broken"
    shutil.copytree(inputs["cohort"], broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(MedmodalError, match="unreadable JSON"):
        detect_kind(broken)
    with pytest.raises(MedmodalError, match="inside the folder"):
        write_report(inputs["cohort"], inputs["cohort"] / "r.html")
    with pytest.raises(MedmodalError, match="is an evaluate output"):
        write_report(inputs["eval"], tmp_path / "e.html", tsne={"color_by": "gender"})
    with pytest.raises(MedmodalError, match="apply to a run folder"):
        write_report(inputs["cohort"], tmp_path / "c.html", tsne={"color_by": "gender"})
    with pytest.raises(MedmodalError, match="ending in .html"):
        write_report(inputs["cohort"], tmp_path / "r.png")
    page = tmp_path / "r.html"
    page.write_text("mine")
    res = CliRunner().invoke(app, ["report", str(inputs["cohort"]), "--out", str(page)])
    assert res.exit_code == 1 and "already exists" in res.output and page.read_text() == "mine"
    res = CliRunner().invoke(app, ["report", str(inputs["cohort"]), "--out", str(page), "--overwrite"])
    assert res.exit_code == 0 and "cohort page" in res.output and page.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.html")] == []  # no temporary left


# ---------------------------------------------------------------------------------------------- figures


def test_curves_agree_with_scikit_learn_and_the_metrics_module():
    from sklearn.metrics import roc_auc_score

    from medmodal.models.metrics import ece_score

    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(0, 0.15, 400), 0, 1)
    roc = roc_with_band(y, p, n_boot=100)
    assert roc.score == pytest.approx(roc_auc_score(y, p))
    tpr = np.interp(roc.band_x, roc.x, roc.y)
    inside = (roc.band_low <= tpr + 1e-9) & (tpr <= roc.band_high + 1e-9)
    assert inside.mean() > 0.9
    pr = pr_with_band(y, p, n_boot=100)
    assert np.all(pr.band_low <= pr.band_high)
    rel = reliability(y, p, n_boot=100)
    assert rel.ece == pytest.approx(ece_score(y, p)) and rel.counts.sum() == len(y)
    assert wilson(0, 10)[2] == pytest.approx(0.2775, abs=1e-3)  # the textbook Wilson upper bound for 0/10


def test_figures_are_deterministic_pngs_and_the_run_uses_them(inputs):
    from PIL import Image

    metrics = json.loads((inputs["run"] / "metrics.json").read_text())
    tr = metrics["training"]
    png = F.training_curves(tr["history"], tr["best_epoch"])
    assert png == F.training_curves(tr["history"], tr["best_epoch"])
    assert (inputs["run"] / "training_curve.png").read_bytes() == png  # models/train.py draws with the same code
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size[0] > 500


# ---------------------------------------------------------------------------------------------- browser

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Chromium (Debian: apt-get install chromium; .ci/run installs it) to open the reports")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs the playwright package (pip install -e '.[test]') to drive Chromium")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


@pytest.mark.parametrize("name", ["cohort", "run", "eval", "bench"])
def test_page_renders_offline_in_chromium(browser, pages, name, tmp_path):
    from PIL import Image

    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    url = pages[name].resolve().as_uri()
    page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    page.goto(url, wait_until="load")
    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    shot = page.screenshot(full_page=True)
    page.close()
    assert requests == [url]  # the page itself and nothing else: no font, script, stylesheet or image fetched
    assert len(images) == len(IMG.findall(pages[name].read_text())) > 0
    assert all(ok and w > 0 and h > 0 for ok, w, h in images), images
    img = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=float)
    assert img.shape[0] > 900 and img.std() > 10  # a full page of figures and text, not a blank one
    assert (img < 128).mean() > 0.005  # enough dark pixels to be text and plot lines
