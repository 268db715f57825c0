"""The `kdbench` command line: run, profile, report, check, list."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from kdbench.errors import KdbenchError

app = typer.Typer(
    name="kdbench",
    help="Benchmark knowledge distillation for segmentation: accuracy and cost, side by side.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks and debug logs.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show info logs.")] = False,
) -> None:
    _state["debug"] = debug
    level = logging.WARNING
    if verbose:
        level = logging.INFO
    if debug:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


class Registry(str, Enum):
    models = "models"
    strategies = "strategies"
    datasets = "datasets"


@app.command("list")
def list_command(
    what: Annotated[Registry, typer.Argument(help="Which registry to print.")],
    pattern: Annotated[str, typer.Argument(help="Shell-style wildcard filter, e.g. 'u*'.")] = "*",
) -> None:
    """Print the registered models, distillation strategies or datasets."""
    from kdbench.data import list_datasets
    from kdbench.distill import list_strategies
    from kdbench.models import list_models

    listing = {"models": list_models, "strategies": list_strategies, "datasets": list_datasets}
    for name in listing[what.value](pattern):
        typer.echo(name)


@app.command("run")
def run_command(
    config: Annotated[
        Path | None,
        typer.Argument(help="Matrix file (TOML). Without it, the embedded default matrix runs."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Results folder (default: run.output_dir of the matrix)."
        ),
    ] = None,
    data_root: Annotated[
        str | None,
        typer.Option(
            "--data-root",
            envvar="KDBENCH_DATA_ROOT",
            help="Dataset folder; replaces data.options.root of the matrix.",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Override train.epochs for every model (epochs).")
    ] = None,
    report: Annotated[bool, typer.Option(help="Build leaderboards and plots at the end.")] = True,
) -> None:
    """Train and evaluate every cell of a matrix, profile every model, write leaderboards.

    Rerunning the same command skips finished cells and resumes the rest.
    """
    from kdbench.config import load_config
    from kdbench.progress import RunProgress
    from kdbench.runner import Runner

    cfg = load_config(config, data_root=data_root)
    if epochs is not None:
        cfg = _override_epochs(cfg, epochs)
    out = output or Path(cfg.run.output_dir)
    console.print(escape(f"kdbench run: matrix {cfg.source} -> {out}"), highlight=False)

    try:
        with RunProgress(console) as progress:
            summary = Runner(cfg, out, progress=progress.update).run()
    except KeyboardInterrupt:
        console.print("interrupted: finished cells are kept; rerun the same command to resume")
        raise typer.Exit(130) from None
    console.print(
        f"cells finished: {len(summary.finished)}, skipped (already done): {len(summary.skipped)}, "
        f"failed: {len(summary.failed)}"
    )
    if report:
        from kdbench.report import build_report

        result = build_report(out)
        for problem in result.problems:
            console.print(f"[yellow]warning:[/yellow] {escape(problem)}")
        console.print(f"leaderboard: {out / 'leaderboard.md'}")
    if summary.failed:
        console.print(
            f"[red]failed cells:[/red] {', '.join(summary.failed)} (see their JSON files)"
        )
        raise typer.Exit(1)


def _override_epochs(cfg, epochs: int):
    import dataclasses

    def replace(spec):
        return (
            dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=epochs))
            if spec.train
            else spec
        )

    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, epochs=epochs),
        teachers=tuple(replace(t) for t in cfg.teachers),
        students=tuple(replace(s) for s in cfg.students),
    )


def _mount_optional_commands() -> None:
    from kdbench.check import check_cli
    from kdbench.profile.command import profile_cli
    from kdbench.report.command import report_cli

    app.command("profile")(profile_cli)
    app.command("report")(report_cli)
    app.command("check")(check_cli)


_mount_optional_commands()


def main() -> None:
    """Entry point: run the app; user errors print one line and exit with status 2.

    Usage errors (unknown option, bad value) are reported by typer, also with status 2.
    """
    try:
        app()
    except KdbenchError as exc:
        if _state["debug"]:
            raise
        # escape(): messages name keys such as [train], which rich would read as markup.
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
