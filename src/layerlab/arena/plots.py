"""Plots of what a run recorded (learning curves and probe series), drawn from the store only."""
from __future__ import annotations

from pathlib import Path

from .store import Store

MAX_LABELLED = 12  # a probe panel with more series (one per layer) labels only its summary series


def _series(store: Store, run_id: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in store.metrics(run_id):
        if r["name"] == "lr":
            continue
        series.setdefault((r["split"], r["name"]), []).append((r["step"], r["value"]))
    return series


def plot_run(store: Store, run_id: str, output: str | Path | None = None) -> Path:
    """Training loss and every validation metric against step (top row), and one panel per
    probe with its scalar series against step on a log axis (bottom rows); PNG or SVG by the
    file's suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(store, run_id)
    curves = {k: v for k, v in series.items() if k[0] != "probe"}
    probes: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for (split, name), pts in series.items():
        if split == "probe":
            probe, _, key = name.partition("/")
            probes.setdefault(probe, {})[key] = pts
    names = sorted({n for (_, n) in curves})
    if not names and not probes:
        raise ValueError(f"run {run_id} has no recorded metrics yet")
    cols = max(len(names), min(len(probes), 4), 1)
    rows = (1 if names else 0) + -(-len(probes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, name in zip(axes[0], names):
        ax.set_visible(True)
        for (split, n), pts in sorted(curves.items()):
            if n == name:
                ax.plot([s for s, _ in pts], [v for _, v in pts], label=split, marker="." if len(pts) < 40 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        if name == "loss":
            ax.set_yscale("log")
        ax.legend()
    probe_axes = list(axes.flat)[cols if names else 0:]
    for ax, (probe, keyed) in zip(probe_axes, sorted(probes.items())):
        ax.set_visible(True)
        summary = {k: v for k, v in keyed.items() if "." not in k} if len(keyed) > MAX_LABELLED else keyed
        for key, pts in sorted(keyed.items()):
            xs, ys = [s for s, _ in pts], [v for _, v in pts]
            if key.startswith("theory"):  # a closed form beside its measurement: dashed
                ax.plot(xs, ys, ls="--", color="black", lw=0.9, label=key if key in summary else None)
            elif key in summary:
                ax.plot(xs, ys, marker=".", label=key)
            else:
                ax.plot(xs, ys, lw=0.6, alpha=0.4, color="gray")
        values = [v for pts in keyed.values() for _, v in pts if v == v and abs(v) != float("inf")]
        if values and min(values) > 0 and max(values) > 1e3 * min(values):  # orders of magnitude apart
            ax.set_yscale("log")
        ax.set_title(f"probe: {probe}")
        ax.set_xlabel("step")
        ax.set_xscale("symlog", linthresh=1)
        if summary:
            ax.legend(fontsize="small")
    spec = store.spec(run_id)
    fig.suptitle(f"{run_id} · {spec.task.name} · {spec.model.label()} · lr {spec.optim.lr:g} · seed {spec.seed}")
    fig.tight_layout()
    out = Path(output or f"{run_id}.png")
    fig.savefig(out)
    plt.close(fig)
    return out
