"""Run a suite: expand and validate it, skip finished runs, resume interrupted ones, show progress."""
from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .executor import Executor, LocalExecutor
from .leaderboard import board, render
from .store import FINISHED, Store
from .suite import Suite, expand


def run_suite(suite: Suite, store: Store, *, executor: Executor | None = None, device: str = "cpu",
              console: Console | None = None, show_board: bool = True) -> dict[str, int]:
    """Train every unfinished run of `suite` into `store`; returns a count of runs by final status."""
    console = console or Console()
    executor = executor or LocalExecutor(1)
    t0 = time.time()
    planned = expand(suite)  # everything is validated before the first step of training
    for p in planned:
        store.add_run(p.spec, suite=suite.name, labels=p.labels)
    runs = {p.spec.run_id: p for p in planned}
    status = {rid: store.run(rid)["status"] for rid in runs}
    todo = [rid for rid in runs if status[rid] not in FINISHED]
    resumed = sum(status[rid] in ("running", "interrupted", "failed") for rid in todo)
    console.print(f"[b]suite {escape(suite.name)}[/b]: {len(runs)} runs ({len(runs) - len(todo)} already finished, "
                  f"{len(todo)} to run{f', {resumed} to resume or retry' if resumed else ''}) → {escape(str(store.root))}",
                  highlight=False)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task(escape(f"suite {suite.name}"), total=len(runs), completed=len(runs) - len(todo))
        bars: dict[str, int] = {}

        def label(rid: str) -> str:
            p = runs[rid]
            return f"  {p.task_label} · {p.model_label} · lr {p.spec.optim.lr:g} · seed {p.spec.seed}"

        def on_progress(rid: str, step: int, total: int) -> None:
            if rid not in bars:
                bars[rid] = progress.add_task(escape(label(rid)), total=total)
            progress.update(bars[rid], completed=step)

        def on_finished(rid: str, st: str) -> None:
            status[rid] = st
            if rid in bars:
                progress.remove_task(bars.pop(rid))
            progress.advance(overall)
            if st != "done":
                colour = "yellow" if st == "diverged" else "red"
                row = store.run(rid)
                why = f" at step {row['diverged_step']}" if st == "diverged" else f": {(row['error'] or '').splitlines()[0] if row['error'] else ''}"
                progress.console.print(f"[{colour}]{escape(f'{label(rid).strip()}: {st}{why}')}[/{colour}]")

        def on_poll() -> None:
            for rid, (st, step, total) in store.progress(todo).items():
                if st == "running" and step > 0:
                    on_progress(rid, step, total)

        executor.execute(store.root, todo, device=device, on_progress=on_progress,
                         on_finished=on_finished, on_poll=on_poll)

    counts: dict[str, int] = {}
    for st in status.values():
        counts[st] = counts.get(st, 0) + 1
    console.print(Text(f"suite {suite.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + f" in {time.time() - t0:.0f} s"))
    if show_board:
        for table in render(board(store, suite.name, suite.baseline), suite.name):
            console.print(table)
    return counts

