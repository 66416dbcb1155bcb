"""What is registered, and every option each entry takes: the CLI's derived flags, ``medmodal list`` and the
generated tables in docs/.

All three read the registries (``SOURCES``, ``TASKS``, ``FEATURIZERS``, ``BACKBONES``, ``FRAMEWORKS``) and the
typed configs they carry (``medmodal.options``), so neither a flag, a listing nor a docs table can drift from the
code. :class:`Flag` describes a command-line option without typer (cli.py binds it); the docs tables sit between
``<!-- generated: KEY -->`` and ``<!-- end generated -->`` lines, ``python -m medmodal.catalog`` rewrites them
and ``tests/test_registries.py`` fails when one differs from what this module renders.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmodal.common import MedmodalError, Registry
from medmodal.options import Option, describe, options_of

WHAT = ("sources", "tasks", "featurizers", "backbones", "frameworks")


def registry(what: str) -> Registry:
    """The registry called ``what``; importing its package fills it."""
    if what in ("sources", "tasks"):
        import medmodal.cohort  # noqa: F401
        from medmodal.cohort.base import SOURCES, TASKS

        return SOURCES if what == "sources" else TASKS
    if what == "featurizers":
        from medmodal.featurize import FEATURIZERS

        return FEATURIZERS
    if what in ("backbones", "frameworks"):
        from medmodal.models.base import BACKBONES, FRAMEWORKS

        return BACKBONES if what == "backbones" else FRAMEWORKS
    raise MedmodalError(f"nothing called '{what}' is registered (choose from: {', '.join(WHAT)})")


def description(obj: Any) -> str:
    """A registered entry's one-line description: its ``description`` attribute or its docstring's first line."""
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text:
        doc = obj.__doc__ if isinstance(obj, type) else None
        text = (doc or "").strip().split("\n\n")[0]
    return " ".join(text.split())


def summary(what: str) -> list[dict[str, str]]:
    """One row per entry of ``what``: its name, what it is, and the names of its options."""
    reg = registry(what)
    rows = []
    for name, obj in reg.items():
        row = {"name": name}
        if what == "sources":
            row["description"] = description(obj)
            row["modalities"] = ", ".join(m.name for m in obj.modalities)
            row["extra roots"] = ", ".join(_root_flag(m) for m in obj.extra_roots) or "-"
        elif what == "tasks":
            row["sources"] = ", ".join(obj.sources)
            row["labels"] = ", ".join(lab.name for lab in obj.labels)
            row["params"] = ", ".join(f"{k}={v}" for k, v in obj.params.items()) or "-"
        else:
            if what == "featurizers":
                from medmodal.featurize import default_featurizer

                row["kind"] = obj.kind + (" (default)" if default_featurizer(obj.kind) == name else "")
            row["description"] = description(obj)
            row["options"] = ", ".join(r["option"] for r in describe(obj.config_class)) or "-"
        rows.append(row)
    return rows


def options(what: str, name: str) -> list[dict[str, str]]:
    """The options of entry ``name`` of ``what``: option, type, default, help."""
    obj = registry(what).get(name)
    if what == "sources":
        return [
            {"option": _root_flag(m), "type": "path", "default": f"RAW/{m}", "help": text}
            for m, text in obj.extra_roots.items()
        ]
    return describe(obj.config_class)


def _root_flag(module: str) -> str:
    from medmodal.cohort.base import root_flag

    return root_flag(module)


def rich_table(title: str, rows: list[dict[str, str]]) -> Any:
    """``rows`` as a rich table (``medmodal list``)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in rows[0] if rows else ["name"]:
        table.add_column(col, overflow="fold", no_wrap=col in ("name", "option"))
    for row in rows:
        table.add_row(*row.values())
    return table


# ---------------------------------------------------------------------------------------------------- CLI flags
@dataclass(frozen=True)
class Flag:
    """One command-line option derived from a registry: its names, and where its value goes (``key``: a config
    field, ``"kind.field"``, ``("featurizer", kind)``, a source's root module)."""

    key: Any
    names: tuple[str, ...]  # errors name the first
    help: str
    default: str  # as --help shows it
    option: Option | None = None  # the config field that types the value (None: plain text, a path, an int)
    type: str = "text"  # "text" | "bool" | "path" | "int" | "float"
    panel: str | None = None

    @property
    def param(self) -> str:
        """A Python identifier for the parameter."""
        return "o_" + re.sub(r"\W", "_", str(self.key))


def config_flags(cls: type, *, panel: str | None = None) -> list[Flag]:
    """``--<field>`` for every field of config ``cls`` (a bool: ``--<field>/--no-<field>``)."""
    return [_field_flag(o, o.name, (o.flag,), panel) for o in options_of(cls)]


def _field_flag(opt: Option, key: Any, names: tuple[str, ...], panel: str | None) -> Flag:
    kind = "bool" if opt.base is bool else "text"
    return Flag(key, names, opt.help, opt.default_text(), opt, kind, panel)


def featurize_commands() -> dict[str, list[str]]:
    """``medmodal featurize <command>`` -> the modality kinds it writes (a featurizer's ``command``, else its
    kind: a new kind's featurizer brings its own command)."""
    from medmodal.featurize.base import FEATURIZERS, command_of

    commands: dict[str, list[str]] = {}
    for name, cls in FEATURIZERS.items():
        kinds = commands.setdefault(command_of(name), [])
        if cls.kind not in kinds:
            kinds.append(cls.kind)
    return dict(sorted(commands.items()))


def featurize_flags(kinds: list[str], *, prefix_all: bool) -> list[Flag]:
    """The flags of a featurize command over ``kinds``: ``--featurizer`` (``--<kind>-featurizer`` for several
    kinds), then every config field of every featurizer of those kinds. A field is ``--<field>`` when one kind
    has it, or when it is ``shared`` (``--device``: then for all); else ``--<kind>-<field>``. ``prefix_all``
    (`featurize all`) gives every unshared field its ``--<kind>-<field>`` name as well, so a flag keeps its name
    whatever else gets registered."""
    from medmodal.featurize.base import FEATURIZERS, default_featurizer, featurizers_of

    out, fields = [], {}  # fields: name -> {kind: Option}
    for kind in kinds:
        names = featurizers_of(kind)
        flag = "--featurizer" if len(kinds) == 1 else f"--{kind}-featurizer"
        text = f"{kind} featurizer: {' | '.join(names)} (`medmodal list featurizers`)"
        out.append(Flag(("featurizer", kind), (flag,), text, default_featurizer(kind)))
        for name in [default_featurizer(kind), *names]:
            for opt in options_of(FEATURIZERS.get(name).config_class):
                fields.setdefault(opt.name, {}).setdefault(kind, opt)
    for field, by_kind in fields.items():
        opt, dashed = next(iter(by_kind.values())), field.replace("_", "-")
        if opt.shared or (len(by_kind) == 1 and not prefix_all):
            panel = f"{' and '.join(by_kind) if len(by_kind) < 3 else 'every'} featurizer options"
            out.append(_field_flag(opt, field, (f"--{dashed}",), panel))
            continue
        for kind, kopt in by_kind.items():
            names = ((f"--{dashed}",) if len(by_kind) == 1 else ()) + (f"--{kind}-{dashed}",)
            out.append(_field_flag(kopt, f"{kind}.{field}", names, f"{kind} featurizer options"))
    return out


def root_flags() -> list[Flag]:
    """``--<module>-root`` for every extra root a registered source declares (``Source.extra_roots``)."""
    from medmodal.cohort.base import root_flag

    declared: dict[str, list[tuple[str, str]]] = {}
    for name, src in registry("sources").items():
        for module, what in src.extra_roots.items():
            declared.setdefault(module, []).append((name, what))
    return [
        Flag(module, (root_flag(module),), f"{uses[0][1]} [{', '.join(n for n, _ in uses)}]", "", type="path")
        for module, uses in sorted(declared.items())
    ]


def default_flag(fn: Any, name: str, help: str) -> Flag:
    """``--<name>`` for keyword ``name`` of library function ``fn``, whose default is the one place it is stated."""
    default = inspect.signature(fn).parameters[name].default
    kind = {int: "int", float: "float"}.get(type(default), "text")
    return Flag(name, ("--" + name.replace("_", "-"),), help, str(default), type=kind)


def spelled(flags: Iterable[Flag]) -> dict[Any, str]:
    """key -> the flag a user most likely typed (its first name), for error messages."""
    return {f.key: f.names[0] for f in flags}


# ---------------------------------------------------------------------------------------------------- docs tables
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(rows: list[dict[str, str]], columns: Iterable[str] | None = None) -> str:
    columns = list(columns or (rows[0] if rows else []))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _entries_table(what: str, column: str) -> str:
    """Every option of every entry of ``what``, the entry named on its first row."""
    rows = []
    for name in registry(what).names():
        opts = options(what, name) or [{"option": "-", "type": "", "default": "", "help": "no options"}]
        for i, opt in enumerate(opts):
            rows.append({column: f"`{name}`" if i == 0 else "", **_ticked(opt)})
    return markdown_table(rows, [column, "option", "type", "default", "meaning"])


def _ticked(opt: dict[str, str]) -> dict[str, str]:
    return {"option": f"`{opt['option']}`", "type": opt["type"], "default": opt["default"], "meaning": opt["help"]}


def render(key: str) -> str:
    """The markdown of generated docs block ``key``."""
    if key in ("backbones", "frameworks"):
        return _entries_table(key, key[:-1])
    if key == "featurizers":
        rows = [{**r, "name": f"`{r['name']}`"} for r in summary("featurizers")]
        return markdown_table(rows, ["name", "kind", "description"]) + "\n\n" + _entries_table(key, "featurizer")
    if key == "sources":
        rows = [{**r, "name": f"`{r['name']}`"} for r in summary("sources")]
        return markdown_table(rows, ["name", "description", "modalities", "extra roots"])
    if key == "tasks":
        rows = []
        for name, task in registry("tasks").items():
            for i, opt in enumerate(describe(task.config_class) or [{"option": "-", "type": "", "default": ""}]):
                first = {"task": f"`{name}`", "sources": ", ".join(task.sources)} if i == 0 else {}
                rows.append({**first, "param": f"`{opt['option']}`", "type": opt["type"], "default": opt["default"]})
        return markdown_table(rows, ["task", "sources", "param", "type", "default"])
    if key == "train":
        from medmodal.models.train import TrainConfig

        return markdown_table([_ticked(r) for r in describe(TrainConfig)], ["option", "type", "default", "meaning"])
    raise MedmodalError(f"no generated docs table '{key}'")


_BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)


def update(text: str) -> str:
    """``text`` with every generated block re-rendered."""
    return _BLOCK.sub(lambda m: f"{m.group(1)}{render(m.group(2))}\n{m.group(4)}", text)


def blocks(text: str) -> list[str]:
    return [m.group(2) for m in _BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rewrite the generated registry tables in docs/*.md.")
    ap.add_argument("--check", action="store_true", help="only report the pages that differ (exit 1)")
    args = ap.parse_args(argv)
    stale = []
    for page in sorted((Path(__file__).resolve().parent / "docs").glob("*.md")):
        text = page.read_text()
        new = update(text)
        if new != text:
            stale.append(page)
            if not args.check:
                page.write_text(new)
    for page in stale:
        print(f"{'differs' if args.check else 'rewrote'}: {page}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
