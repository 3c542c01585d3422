"""Plots of what a run recorded (learning curves), drawn from the store only."""
from __future__ import annotations

from pathlib import Path

from .store import Store


def plot_run(store: Store, run_id: str, output: str | Path | None = None) -> Path:
    """Training loss and every validation metric against step; PNG or SVG by the file's suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = store.metrics(run_id)
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in rows:
        if r["name"] == "lr":
            continue
        series.setdefault((r["split"], r["name"]), []).append((r["step"], r["value"]))
    names = sorted({n for (_, n) in series})
    if not names:
        raise ValueError(f"run {run_id} has no recorded metrics yet")
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for (split, n), pts in sorted(series.items()):
            if n == name:
                ax.plot([s for s, _ in pts], [v for _, v in pts], label=split, marker="." if len(pts) < 40 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        if name == "loss":
            ax.set_yscale("log")
        ax.legend()
    spec = store.spec(run_id)
    fig.suptitle(f"{run_id} · {spec.task.name} · {spec.model.label()} · lr {spec.optim.lr:g} · seed {spec.seed}")
    fig.tight_layout()
    out = Path(output or f"{run_id}.png")
    fig.savefig(out)
    plt.close(fig)
    return out
