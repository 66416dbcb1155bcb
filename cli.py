"""The `medmodal` command line: thin typer commands, each calling one library function.

Sub-apps follow ../shared/DESIGN.md: cohort, featurize, train, evaluate, simulate, benchmark, report.
Every command catches MedmodalError, prints its one line to stderr and exits 1; every command prints where it
wrote its outputs. The library never imports this module.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List, Optional

import typer

from medmodal.common import MedmodalError, console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
cohort_app = typer.Typer(no_args_is_help=True, help="Build and inspect leakage-safe cohorts from raw files.")
featurize_app = typer.Typer(no_args_is_help=True, help="Embed notes, images and structured data into the feature store.")
benchmark_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print tables.")
app.add_typer(cohort_app, name="cohort")
app.add_typer(featurize_app, name="featurize")
app.add_typer(benchmark_app, name="benchmark")


def friendly(fn: Callable) -> Callable:
    """Turn a MedmodalError into one red line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MedmodalError as err:
            console.print(f"[red]error:[/red] {err}", soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


# ---------------------------------------------------------------------------------------------- cohort (issue 2, 7)

# ---------------------------------------------------------------------------------------------- simulate (issue 3)

# ---------------------------------------------------------------------------------------------- featurize (issue 4)

# ---------------------------------------------------------------------------------------------- train / evaluate (issue 5)

# ---------------------------------------------------------------------------------------------- report / benchmark (issue 6)

# ---------------------------------------------------------------------------------------------- demo


def main() -> None:
    app()


if __name__ == "__main__":
    main()
