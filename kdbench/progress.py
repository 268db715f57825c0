"""Progress display for `kdbench run` (command line only; the library reports through callbacks)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RunProgress:
    """Show one bar per cell with its epoch, loss and validation IoU.

    When the console is not a terminal (CI logs, files), print one plain line when each cell
    starts and ends instead of redrawing bars.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self.task = None
        self.started = 0.0

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, event: str, payload: dict) -> None:
        """Receive a runner event: ``cell_start``, ``epoch`` or ``cell_end``."""
        if event == "cell_start":
            self.started = time.perf_counter()
            self.task = self.progress.add_task(
                payload["cell_id"], total=payload["epochs"], status=""
            )
            if not self.live:
                self.console.print(
                    f"cell {payload['cell_id']}: started ({payload['epochs']} epochs)"
                )
        elif event == "epoch" and self.task is not None:
            val = payload.get("val_mean_iou")
            status = f"loss {payload['train_loss']:.4f}"
            if val is not None:
                status += f" val IoU {val:.3f}"
            self.progress.update(self.task, completed=payload["epoch"], status=status)
        elif event == "cell_end" and self.task is not None:
            iou = payload.get("mean_iou")
            status = payload["status"] + (f", test IoU {iou:.3f}" if iou is not None else "")
            self.progress.update(self.task, status=status)
            if not self.live:
                seconds = time.perf_counter() - self.started
                self.console.print(f"cell {payload['cell_id']}: {status} ({seconds:.0f} s)")
            self.task = None
