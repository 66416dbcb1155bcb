"""Hostile outputs, one table: where a command writes, what it may replace, store identity, leftovers, bad flags.

Every case runs the real CLI (typer's CliRunner, in process) in a fresh copy of one small world - the MIMIC-IV
fixture as raw files, its cohort and feature store, a small simulated dataset, the toy cohort with a trained
run - and checks, besides its own expectations:

- the exit code; no traceback; for a failure exactly one ``error:`` line naming the file or flag;
- no canary note text in the output;
- nothing that existed before was deleted or changed (every file of the world is hashed before and after),
  except under the paths the case says it may change; nothing new either, for a failure;
- no temporary folder or file (``.tmp-``, ``.old-``, ``.medmodal-work-``) left anywhere.

docs/reliability.md describes the rules these cases hold the commands to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.common import OWNER_TAG
from medmodal.contracts import MARKER, write_marker

FIXTURE = Path(__file__).resolve().parent / "data" / "mimic_iv_fixture"
CANARY = "CANARYNOTE4417"
TEMP_MARKS = (".tmp-", ".old-", ".medmodal-work-")


# ---------------------------------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
def template(tmp_path_factory, one_torch_thread) -> Path:
    """Built once, copied for every case: raw/, cohort/, store/, sim/, toy/{cohort,store}, run/, bert/."""
    from medmodal.cohort import build_cohort
    from medmodal.featurize import featurize_structured, featurize_text, tiny
    from medmodal.models.toy import write_toy_cohort
    from medmodal.models.train import train
    from medmodal.simulate import simulate

    root = tmp_path_factory.mktemp("hostile") / "w"
    raw = root / "raw"
    shutil.copytree(FIXTURE, raw, ignore=shutil.ignore_patterns("expected", "SUBJECTS.md"))
    notes = raw / "note" / "discharge.csv"
    notes.write_text(notes.read_text().replace("ruled out", f"ruled out {CANARY}"))
    build_cohort("mimic_iv", raw, "readmission_30d", root / "cohort")
    featurize_structured(root / "cohort", root / "store")
    bert = tiny.make_tiny_bert(root / "bert")
    featurize_text(root / "cohort", root / "store", model=str(bert), max_length=32, stride=8)
    simulate("mimic_iv", root / "sim", subjects=20, seed=3, images=False)
    toy_cohort, toy_store = root / "toy" / "cohort", root / "toy" / "store"
    write_toy_cohort(toy_cohort, toy_store, n=240, seed=0)
    # a text modality as featurize writes it: the encoder's fingerprint nested inside "encoder" (issue 10, item 3)
    note_json = next((toy_store / "cohorts").iterdir()) / "discharge_note.json"
    man = json.loads(note_json.read_text())
    man["encoder"] = {"fingerprint": "a" * 64, "model": "tiny_bert", "preprocessing": {"max_length": 32}}
    note_json.write_text(json.dumps(man))
    train(toy_cohort, toy_store, root / "run", backbone="late_fusion", epochs=1, n_boot=0, progress=False)
    return root


@dataclass
class World:
    root: Path

    def __getattr__(self, name: str) -> Path:
        return self.root / name.replace("__", "/")

    def store_slot(self, store: str = "store") -> Path:
        return next((self.root / store / "cohorts").iterdir())

    def toy_slot(self) -> Path:
        return next((self.root / "toy" / "store" / "cohorts").iterdir())


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(parent: Path, name: str, what: str = "tmp", *, pid: int | None = None, tag: str = OWNER_TAG) -> Path:
    """A folder like one an interrupted medmodal command leaves: owner-tagged name, a marker inside."""
    pid = _dead_pid() if pid is None else pid
    stem = f".medmodal-work-{tag}-{pid}-abc123" if what == "work" else f".{name}.{what}-{tag}-{pid}-abc123"
    d = parent / stem
    d.mkdir(parents=True)
    write_marker(d, "work" if what == "work" else "cohort")
    (d / "partial.parquet").write_bytes(b"half a file")
    return d


# ---------------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    id: str
    argv: Callable[[World], list[str]]
    expect: tuple[str, ...] = ()  # fragments of the error line (failures) or of the output (successes)
    code: int = 1
    setup: Callable[[World], None] | None = None
    may_change: Callable[[World], list[Path]] = field(default=lambda w: [])
    check: Callable[[World, str], None] | None = None
    cwd: Callable[[World], Path] | None = None


def build(out: str, *extra: str, raw: str = "raw", task: str = "readmission_30d") -> Callable[[World], list[str]]:
    """``cohort build`` into ``out`` (relative to the world; "." stays the current folder)."""

    def argv(w: World) -> list[str]:
        where = out if out == "." else str(w.root / out)
        return ["cohort", "build", "mimic_iv", "--raw", str(w.root / raw), "--task", task, "--out", where, *extra]

    return argv


def _abs(w: World, rel: str) -> str:
    return str(w.root / rel)


def train_argv(out: str = "run2", *extra: str) -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        base = ["train", str(w.toy__cohort), "--store", str(w.toy__store), "--backbone", "late_fusion"]
        return [*base, "--out", _abs(w, out), "--epochs", "1", "--n-boot", "0", *extra]

    return argv


def evaluate_argv(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["evaluate", str(w.run), "--cohort", str(w.toy__cohort), "--store", str(w.toy__store), *extra]


def _write(path: Path, text: str = "mine") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _edit_json(path: Path, fn: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _reversed_modalities(monkeypatch):
    """Make the build write modalities.parquet in the wrong row order, so an audit trips on the temp folder."""
    import medmodal.cohort.build as b

    real = b._write_outputs

    def wrong(con, spec, src, modalities, attrition, located, tmp):
        groups = real(con, spec, src, modalities, attrition, located, tmp)
        pl.read_parquet(tmp / "modalities.parquet").reverse().write_parquet(tmp / "modalities.parquet")
        return groups

    monkeypatch.setattr(b, "_write_outputs", wrong)


def _one_class_test(w: World) -> None:
    path = w.toy__cohort / "cohort.parquet"
    df = pl.read_parquet(path)
    df.with_columns(pl.when(pl.col("split") == "test").then(0).otherwise(pl.col("mortality")).alias("mortality")).cast(
        {"mortality": df.schema["mortality"]}
    ).write_parquet(path)


def _metrics_say_why(w: World, out: str) -> None:
    m = json.loads((w.run2 / "metrics.json").read_text())
    auroc = m["tasks"]["mortality"]["test"]["overall"]["auroc"]
    assert auroc["value"] is None and "one class" in auroc["why_missing"]
    assert "mortality: the test split has one class only" in out


CASES = [
    # ---- item 1: an --out that is, holds, or sits inside an input; foreign folders; files; "."
    Case("build-out-is-raw", build("raw"), ("raw", "--out", "is the input given as --raw")),
    Case("build-out-inside-raw", build("raw/hosp"), ("raw/hosp", "is inside the input")),
    Case("build-out-above-raw", build("."), ("current folder",), cwd=lambda w: w.root),
    Case("build-out-contains-raw", lambda w: build(str(w.root))(w), ("contains the input",)),
    Case("build-out-dot", build("."), ("current folder",), cwd=lambda w: w.root / "sim"),
    Case(
        "build-out-foreign-folder",
        build("mine"),
        ("mine", "not a medmodal output"),
        setup=lambda w: _write(w.mine / "notes.txt"),
    ),
    Case(
        "build-out-foreign-overwrite",
        build("mine", "--overwrite"),
        ("not a medmodal output",),
        setup=lambda w: _write(w.mine / "a.txt"),
    ),
    Case("build-out-is-file", build("afile"), ("afile", "not a folder"), setup=lambda w: _write(w.afile)),
    Case(
        "build-out-parent-is-file",
        build("afile/cohort"),
        ("afile", "parent that is a file"),
        setup=lambda w: _write(w.afile),
    ),
    Case("build-out-symlink", build("link"), ("link", "symbolic link"), setup=lambda w: os.symlink(w.cohort, w.link)),
    Case("build-out-existing-cohort", build("cohort"), ("cohort", "already exists", "--overwrite")),
    Case("build-out-is-store", build("store", "--overwrite"), ("store", "is a feature store", "not a cohort")),
    Case(
        "build-all-over-a-cohort",
        build("cohort", "--overwrite", task="all"),
        ("is a cohort directory", "not a folder of cohorts"),
    ),
    Case(
        "build-out-is-note-root",
        lambda w: build(str(w.notes), "--note-root", str(w.notes))(w),
        ("is the input given as --note-root",),
        setup=lambda w: shutil.copytree(w.raw__note, w.notes),
    ),
    Case(
        "build-out-inside-cxr-root",
        lambda w: build(str(w.cxr / "out"), "--cxr-root", str(w.cxr))(w),
        ("is inside the input given as --cxr-root",),
        setup=lambda w: shutil.copytree(w.raw__cxr, w.cxr),
    ),
    Case("build-simulated-into-itself", build("sim", raw="sim"), ("sim", "is the input given as --raw")),
    Case("build-simulated-into-its-hosp", build("sim/hosp", raw="sim"), ("sim/hosp", "is inside the input")),
    Case(
        "build-overwrite-same-kind",
        build("cohort", "--overwrite"),
        ("wrote",),
        code=0,
        may_change=lambda w: [w.cohort],
        check=lambda w, out: _no_old(w),
    ),
    Case(
        "simulate-into-foreign",
        lambda w: ["simulate", "mimic_iv", "--out", str(w.mine), "--subjects", "5", "--overwrite"],
        ("mine", "not a medmodal output"),
        setup=lambda w: _write(w.mine / "x.csv"),
    ),
    Case(
        "simulate-into-a-cohort",
        lambda w: ["simulate", "mimic_iv", "--out", str(w.cohort), "--subjects", "5", "--overwrite"],
        ("is a cohort directory", "not a simulated dataset"),
    ),
    Case(
        "simulate-out-dot",
        lambda w: ["simulate", "mimic_iv", "--out", ".", "--subjects", "5"],
        ("current folder",),
        cwd=lambda w: w.root,
    ),
    Case(
        "simulate-again-without-overwrite",
        lambda w: ["simulate", "mimic_iv", "--out", str(w.sim), "--subjects", "5"],
        ("sim", "already exists"),
    ),
    Case(
        "featurize-store-is-cohort",
        lambda w: ["featurize", "structured", str(w.cohort), "--store", str(w.cohort)],
        ("is the input given as the cohort",),
    ),
    Case(
        "featurize-store-inside-cohort",
        lambda w: ["featurize", "structured", str(w.cohort), "--store", str(w.cohort / "s")],
        ("is inside the input",),
    ),
    Case(
        "featurize-store-foreign",
        lambda w: ["featurize", "structured", str(w.cohort), "--store", str(w.mine)],
        ("mine", "not a medmodal feature store"),
        setup=lambda w: _write(w.mine / "thesis.tex"),
    ),
    Case(
        "featurize-store-is-a-run",
        lambda w: ["featurize", "structured", str(w.toy__cohort), "--store", str(w.run)],
        ("is a run directory", "not a feature store"),
    ),
    Case("train-out-is-store", train_argv("toy/store"), ("is the input given as --store",)),
    Case("train-out-inside-cohort", train_argv("toy/cohort/run"), ("is inside the input given as the cohort",)),
    Case("train-out-existing-run", train_argv("run"), ("run", "already exists")),
    Case(
        "train-out-foreign", train_argv("mine"), ("not a medmodal output",), setup=lambda w: _write(w.mine / "paper.md")
    ),
    Case(
        "evaluate-out-foreign",
        evaluate_argv("--out", "{mine}"),
        ("mine", "not a medmodal output"),
        setup=lambda w: _write(w.mine / "results.csv"),
    ),
    Case("evaluate-out-is-run", evaluate_argv("--out", "{run}", "--overwrite"), ("is the input given as RUN_DIR",)),
    Case(
        "evaluate-out-is-cohort",
        evaluate_argv("--out", "{toy/cohort}", "--overwrite"),
        ("is the input given as --cohort",),
    ),
    Case("evaluate-out-above-store", evaluate_argv("--out", "{toy}", "--overwrite"), ("contains the input",)),
    Case(
        "evaluate-out-is-a-file",
        evaluate_argv("--out", "{afile}"),
        ("afile", "not a folder"),
        setup=lambda w: _write(w.afile),
    ),
    Case("evaluate-twice", evaluate_argv(), ("already exists", "--overwrite"), setup=lambda w: _evaluate_once(w)),
    Case(
        "evaluate-twice-overwrite",
        evaluate_argv("--overwrite"),
        ("wrote",),
        code=0,
        setup=lambda w: _evaluate_once(w),
        may_change=lambda w: [w.run / "eval"],
    ),
    Case(
        "report-twice",
        lambda w: ["report", str(w.run), "--color-by", "gender", "--iterations", "250"],
        ("report", "already exists"),
        setup=lambda w: _fake_report(w),
    ),
    Case(
        "benchmark-out-foreign",
        lambda w: ["benchmark", "shift", "--out", str(w.mine)],
        ("mine", "not a medmodal benchmark output"),
        setup=lambda w: _write(w.mine / "old.txt"),
    ),
    Case(
        "demo-out-foreign",
        lambda w: ["demo", "--out", str(w.mine)],
        ("mine", "not a medmodal demo output"),
        setup=lambda w: _write(w.mine / "old.txt"),
    ),
    Case(
        "demo-out-existing-demo",
        lambda w: ["demo", "--out", str(w.d)],
        ("already exists", "--overwrite"),
        setup=lambda w: (w.d.mkdir(), write_marker(w.d, "demo"), _write(w.d / "x")),
    ),
    # ---- items 2 and 3: identity covers content; fingerprints compared recursively; ids as path parts
    Case(
        "identity-seed-changes-id",
        build("cohort_seed1", "--seed", "1"),
        ("wrote",),
        code=0,
        may_change=lambda w: [w.cohort_seed1],
        check=lambda w, out: _ids_differ(w, "cohort_seed1"),
    ),
    Case(
        "identity-release-changes-id",
        build("cohort_31", "--dataset-version", "3.1"),
        ("wrote",),
        code=0,
        may_change=lambda w: [w.cohort_31],
        check=lambda w, out: _ids_differ(w, "cohort_31"),
    ),
    Case(
        "manifest-id-escapes",
        lambda w: ["featurize", "structured", str(w.cohort), "--store", str(w.store)],
        ("manifest.json", "cohort_id", "cannot name a folder"),
        setup=lambda w: _edit_json(w.cohort / "manifest.json", _escape_id),
    ),
    Case(
        "manifest-id-edited",
        lambda w: ["featurize", "structured", str(w.cohort), "--store", str(w.store)],
        ("manifest.json", "cohort_id", "does not match"),
        setup=lambda w: _edit_json(
            w.cohort / "manifest.json", lambda m: m.update(cohort_id="mimic_iv__readmission_30d__000000000000")
        ),
    ),
    Case(
        "manifest-modality-escapes",
        lambda w: ["featurize", "structured", str(w.cohort), "--store", str(w.store)],
        ("manifest.json", "modalities", "cannot name a folder"),
        setup=lambda w: _edit_json(w.cohort / "manifest.json", lambda m: m["modalities"].append("../../evil")),
    ),
    Case(
        "evaluate-nested-encoder-changed",
        evaluate_argv(),
        ("modality 'discharge_note'", "encoder.fingerprint"),
        setup=lambda w: _edit_json(
            w.toy_slot() / "discharge_note.json", lambda m: m["encoder"].update(fingerprint="b" * 64)
        ),
    ),
    Case(
        "evaluate-store-refeaturized",
        evaluate_argv(),
        ("modality 'cxr'", "encoder_fingerprint", "toy-v1"),
        setup=lambda w: _edit_json(w.toy_slot() / "cxr.json", lambda m: m.update(encoder_fingerprint="toy-v2")),
    ),
    Case(
        "evaluate-pooling-changed",
        evaluate_argv(),
        ("modality 'structured'", "pooling"),
        setup=lambda w: _edit_json(w.toy_slot() / "structured.json", lambda m: m.update(pooling="mean")),
    ),
    Case(
        "evaluate-tensor-from-another-cohort",
        evaluate_argv(),
        ("cxr.json", "cohort_id", "was made for cohort"),
        setup=lambda w: _edit_json(w.toy_slot() / "cxr.json", lambda m: m.update(cohort_id="other__x__123456789abc")),
    ),
    Case(
        "evaluate-manifest-shape-lies",
        evaluate_argv(),
        ("cxr.safetensors", "records"),
        setup=lambda w: _edit_json(w.toy_slot() / "cxr.json", lambda m: m.update(shape=[240, 99])),
    ),
    Case(
        "evaluate-rebuilt-cohort",
        lambda w: ["evaluate", str(w.run)],
        ("no longer the cohort this run was trained on",),
        setup=lambda w: _edit_json(w.toy__cohort / "manifest.json", _reidentify),
    ),
    # the refused run's vectors stay in the content-addressed cache (valid; reused once --overwrite is given)
    Case(
        "featurize-other-settings",
        lambda w: [
            "featurize",
            "text",
            str(w.cohort),
            "--store",
            str(w.store),
            "--model",
            str(w.bert),
            "--max-length",
            "24",
            "--stride",
            "4",
        ],
        ("discharge_note.json", "other settings", "--overwrite"),
        may_change=lambda w: [w.store / "cache"],
    ),
    Case(
        "featurize-other-settings-overwrite",
        lambda w: [
            "featurize",
            "text",
            str(w.cohort),
            "--store",
            str(w.store),
            "--model",
            str(w.bert),
            "--max-length",
            "24",
            "--stride",
            "4",
            "--overwrite",
        ],
        ("wrote",),
        code=0,
        may_change=lambda w: [w.store],
    ),
    # ---- item 8: leftovers of killed commands are swept (only provably medmodal's), the rest is kept
    Case(
        "sweep-work-db",
        build("cohort2"),
        ("wrote", "cleaned up 1 leftover"),
        code=0,
        setup=lambda w: _leftover(w.root, "cohort2", "work"),
        may_change=lambda w: [w.cohort2, *w.root.glob(".medmodal-work-*")],
    ),
    Case(
        "sweep-partial-output",
        build("cohort2"),
        ("cleaned up 1 leftover",),
        code=0,
        setup=lambda w: _leftover(w.root, "cohort2", "tmp"),
        may_change=lambda w: [w.cohort2, *w.root.glob(".cohort2.tmp-*")],
    ),
    Case(
        "sweep-restores-interrupted-replace",
        build("cohort3"),
        ("cleaned up 1 leftover",),
        code=0,
        setup=lambda w: _interrupted_replace(w),
        may_change=lambda w: [w.cohort2, w.cohort3, *w.root.glob(".cohort2.old-*")],
        check=lambda w, out: _restored(w),
    ),
    Case(
        "sweep-keeps-live-and-foreign",
        build("cohort2"),
        ("wrote",),
        code=0,
        setup=lambda w: _not_ours(w),
        may_change=lambda w: [w.cohort2],
        check=lambda w, out: _not_ours_kept(w),
    ),
    Case(
        "sweep-store-shard-temp",
        lambda w: ["featurize", "structured", str(w.cohort), "--store", str(w.store)],
        ("wrote",),
        code=0,
        setup=lambda w: _shard_temp(w),
        may_change=lambda w: [w.store],
    ),
    # ---- item 11 (outputs side): audit failures name the final output; featurize is all or nothing
    Case("audit-names-final-path", build("cohort2"), ("cohort2/modalities.parquet", "audit 'modalities_rows' failed")),
    Case(
        "featurize-all-or-nothing",
        lambda w: ["featurize", "all", str(w.cohort), "--store", str(w.fresh_store), "--text-model", str(w.nowhere)],
        ("nowhere", "neither a local directory"),
        check=lambda w, out: _no_store(w),
    ),
    Case(
        "featurize-all-or-nothing-existing",
        lambda w: [
            "featurize",
            "all",
            str(w.cohort),
            "--store",
            str(w.store),
            "--text-model",
            str(w.nowhere),
            "--max-hours",
            "12",
            "--overwrite",
        ],
        ("nowhere", "neither a local directory"),
    ),
    # ---- honest about unusable results; bad numbers are one line naming the flag
    Case(
        "train-one-class-test",
        train_argv(),
        ("warning", "one class"),
        code=0,
        setup=_one_class_test,
        may_change=lambda w: [w.run2],
        check=_metrics_say_why,
    ),
    Case("train-lr-nan", train_argv("run2", "--lr", "nan"), ("--lr", "finite")),
    Case("train-lr-zero", train_argv("run2", "--lr", "0"), ("--lr", "> 0")),
    Case("train-epochs-negative", train_argv("run2", "--epochs", "-1"), ("--epochs", ">= 1")),
    Case("train-batch-size-zero", train_argv("run2", "--batch-size", "0"), ("--batch-size",)),
    Case("train-patience-zero", train_argv("run2", "--patience", "0"), ("--patience",)),
    Case("train-n-boot-negative", train_argv("run2", "--n-boot", "-5"), ("--n-boot", ">= 0")),
    Case("train-seed-negative", train_argv("run2", "--seed", "-1"), ("--seed",)),
    Case("train-threads-zero", train_argv("run2", "--threads", "0"), ("--threads",)),
    Case("train-grad-clip-inf", train_argv("run2", "--train-arg", "grad_clip=inf"), ("grad_clip",)),
    Case("train-weight-decay-negative", train_argv("run2", "--train-arg", "weight_decay=-1"), ("weight_decay", ">= 0")),
    Case("evaluate-n-boot-negative", evaluate_argv("--n-boot", "-5"), ("--n-boot", ">= 0")),
    Case(
        "report-max-points-zero",
        lambda w: ["report", str(w.run), "--color-by", "gender", "--max-points", "0"],
        ("--max-points",),
    ),
]


def _no_old(w: World) -> None:
    assert not list(w.root.glob(".cohort.old-*")) and (w.cohort / MARKER).is_file()


def _evaluate_once(w: World) -> None:
    res = CliRunner().invoke(app, evaluate_argv()(w))
    assert res.exit_code == 0, res.output


def _fake_report(w: World) -> None:
    (w.run / "report").mkdir()
    write_marker(w.run / "report", "report")
    _write(w.run / "report" / "report.json", "{}")


def _ids_differ(w: World, other: str) -> None:
    a = json.loads((w.cohort / "manifest.json").read_text())
    b = json.loads((w.root / other / "manifest.json").read_text())
    assert a["cohort_id"] != b["cohort_id"]


def _escape_id(m: dict) -> None:
    m.pop("cohort_identity")
    m["cohort_id"] = "../../x"


def _reidentify(m: dict) -> None:
    m["cohort_identity"]["split_seed"] = 1  # as a rebuild with --seed 1 in place would record
    from medmodal.contracts import compute_cohort_id

    m["cohort_id"] = compute_cohort_id(m["cohort_identity"])


def _interrupted_replace(w: World) -> None:
    """Killed between 'old output renamed away' and 'new output renamed in': only the .old- folder is left."""
    old = _leftover(w.root, "cohort2", "old")
    shutil.rmtree(old)
    shutil.copytree(w.cohort, old)


def _not_ours(w: World) -> None:
    _leftover(w.root, "x", "tmp", pid=os.getpid())  # a live process: not provably dead
    _leftover(w.root, "y", "tmp", tag="0badc0de")  # another machine (shared disk)
    (w.root / ".z.tmp-notmedmodal").mkdir()  # a user's folder that merely looks similar
    (w.root / ".z.tmp-notmedmodal" / "keep.txt").write_text("mine")


def _not_ours_kept(w: World) -> None:
    names = {p.name for p in w.root.iterdir()}
    assert any(n.startswith(".x.tmp-") for n in names) and any(n.startswith(".y.tmp-") for n in names)
    assert ".z.tmp-notmedmodal" in names


def _shard_temp(w: World) -> None:
    shards = next(p for p in (w.store / "cache").iterdir() if (p / "shards").is_dir()) / "shards"
    (shards / f".123-456-0.safetensors.tmp-{OWNER_TAG}-{_dead_pid()}-w").write_bytes(b"partial shard")


def _no_store(w: World) -> None:
    assert not w.fresh_store.exists()  # a store this failed command created, with nothing in it, is gone again


def _restored(w: World) -> None:
    assert (w.cohort2 / MARKER).is_file() and (w.cohort2 / "cohort.parquet").is_file()
    assert not list(w.root.glob(".cohort2.old-*"))


def _expected_leftover(w: World, case: Case) -> set[str]:
    """Temp-looking names a case planted on purpose and expects to survive."""
    return {n for n in (p.name for p in w.root.iterdir()) if n.startswith((".x.tmp-", ".y.tmp-", ".z.tmp-"))}


def _fill(argv: list[str], w: World) -> list[str]:
    return [str(w.root / a[1:-1]) if a.startswith("{") and a.endswith("}") else a for a in argv]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_output(case: Case, template: Path, tmp_path: Path, monkeypatch) -> None:
    w = World(tmp_path / "w")
    shutil.copytree(template, w.root, symlinks=True)
    config = w.run / "config.json"  # the run records absolute paths: point them at this copy
    config.write_text(config.read_text().replace(str(template), str(w.root)))
    if case.id == "audit-names-final-path":
        _reversed_modalities(monkeypatch)
    if case.setup:
        case.setup(w)
    planted = _expected_leftover(w, case)
    allowed_before = case.may_change(w)  # leftovers a case expects to be swept exist only now
    before = _digest(w.root)
    if case.cwd:
        monkeypatch.chdir(case.cwd(w))
    res = CliRunner().invoke(app, _fill(case.argv(w), w))
    out = res.output

    assert res.exit_code == case.code, out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in out and CANARY not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    if case.code:
        assert len(errors) == 1, out
        for fragment in case.expect:
            assert fragment in errors[0], errors[0]
    else:
        assert not errors, out
        flat = " ".join(out.split())
        for fragment in case.expect:
            assert fragment in flat, out

    # nothing deleted or changed outside what the case may change; nothing new at all after a failure
    after = _digest(w.root)
    allowed = [str(p.relative_to(w.root)) for p in [*allowed_before, *case.may_change(w)]]

    def free(rel: str) -> bool:
        return any(rel == a or rel.startswith(a + "/") for a in allowed)

    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and not free(k)}
    assert not changed, sorted(changed)[:10]
    left = [str(p.relative_to(w.root)) for p in w.root.rglob("*") if any(m in p.name for m in TEMP_MARKS)]
    assert not [p for p in left if p.split("/")[0] not in planted], left
    if case.check:
        case.check(w, out)


# ---------------------------------------------------------------------------------------------------- beside the table
def test_temporaries_are_private_and_outputs_get_the_umask(tmp_path):
    """A partial output (it may hold note text) is 0700 while written; the final one gets the user's umask."""
    from medmodal.common import atomic_file, output_mode
    from medmodal.outputs import atomic_dir, work_dir

    seen = {}
    with atomic_dir(tmp_path / "out", kind="cohort") as tmp:
        seen["tmp"] = tmp.stat().st_mode & 0o777
        (tmp / "a.txt").write_text("x")
    work = work_dir(tmp_path / "out2")
    seen["work"] = work.stat().st_mode & 0o777
    with atomic_file(tmp_path / "f.json", "w") as fh:
        seen["file_tmp"] = Path(fh.name).stat().st_mode & 0o777
        fh.write("{}")
    assert seen == {"tmp": 0o700, "work": 0o700, "file_tmp": 0o600}
    assert (tmp_path / "out").stat().st_mode & 0o777 == output_mode(directory=True)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == output_mode(directory=False)
    shutil.rmtree(work)


def test_fingerprint_comparison_recurses():
    from medmodal.contracts import first_difference

    run = {"encoder": {"files": {"model.safetensors": "aa"}, "preprocessing": {"max_length": 512}}, "pooling": "mean"}
    assert first_difference(run, json.loads(json.dumps(run))) is None
    assert first_difference(run, {**run, "extra": 1}) is None  # a field newer than the run: not compared
    other = json.loads(json.dumps(run))
    other["encoder"]["files"]["model.safetensors"] = "bb"
    assert first_difference(run, other) == ("encoder.files.model.safetensors", "aa", "bb")
    assert first_difference({"mean": [1.0, 2.0]}, {"mean": [1.0, 2.5]}) == ("mean[1]", 2.0, 2.5)
    assert first_difference({"mean": [1.0, 2.0]}, {"mean": [1.0]})[0] == "mean"
    assert first_difference({"std": [float("nan")]}, {"std": [float("nan")]}) is None
    assert first_difference({"shape": [3]}, {"shape": [3.0]}) is None  # JSON int vs float of the same value
    assert first_difference({"encoder": {"fingerprint": "a"}}, {})[0] == "encoder"
