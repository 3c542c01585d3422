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


# ---- quality against measured saving, for the derived runs of one run (`layerlab compress`) ----
SAVINGS = (("nonzero_ratio", "nonzero parameters / dense"), ("bits_ratio", "bits of the weights / dense"),
           ("time_ratio", "inference wall time / dense"), ("memory_ratio", "inference memory / dense"))


def compression_curves(store: Store, parent_id: str) -> dict[str, list[dict]]:
    """The finished derived runs of ``parent_id`` by technique, one point per level (mean over seeds):
    ``{"level", "seeds", split: metric value for each evaluation split, saving: ratio for each of
    SAVINGS}``, by level."""
    from ..tasks import build_task

    spec = store.spec(parent_id)
    metric = build_task(spec.task.name, **spec.task.params).metric
    by: dict[str, dict[float, list[dict]]] = {}
    for r in store.derived_runs(parent_id):
        if r["status"] == "done":
            by.setdefault(r["technique"], {}).setdefault(r["level"], []).append(store.results(r["run_id"]))
    out: dict[str, list[dict]] = {}
    for technique, levels in sorted(by.items()):
        points = []
        for level, results in sorted(levels.items()):
            point: dict = {"level": level, "seeds": len(results)}
            splits = {s for res in results for s in res if s != "savings"}
            for split in sorted(splits):
                vals = [res[split][metric] for res in results if metric in res.get(split, {})]
                point[split] = sum(vals) / len(vals) if vals else float("nan")
            for key, _ in SAVINGS:
                vals = [res["savings"][key] for res in results if key in res.get("savings", {})]
                point[key] = sum(vals) / len(vals) if vals else float("nan")
            points.append(point)
        out[technique] = points
    return out


def plot_compression(store: Store, parent_id: str, output: str | Path | None = None) -> Path:
    """One panel per measured saving (nonzero parameters, bits, wall time, memory, each a ratio against
    the dense parent): the test metric (solid) and validation metric (dashed) of each technique's
    derived runs against it, each point labelled with its level, the dense parent as a star at 1;
    PNG, SVG or PDF by the file's suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..tasks import build_task

    curves = compression_curves(store, parent_id)
    if not curves:
        raise ValueError(f"run {parent_id} has no finished derived runs")
    spec = store.spec(parent_id)
    metric = build_task(spec.task.name, **spec.task.params).metric
    parent = store.results(parent_id)
    fig, axes = plt.subplots(1, len(SAVINGS), figsize=(4.2 * len(SAVINGS), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label) in zip(axes[0], SAVINGS):
        for i, (technique, points) in enumerate(curves.items()):
            c = colours[i % len(colours)]
            xs = [p[key] for p in points]
            ax.plot(xs, [p.get("test", float("nan")) for p in points], marker="o", color=c, label=technique)
            ax.plot(xs, [p.get("val", float("nan")) for p in points], marker=".", ls="--", color=c, alpha=0.6)
            for p in points:
                ax.annotate(f"{p['level']:g}", (p[key], p.get("test", float("nan"))), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        if metric in parent.get("test", {}):
            ax.plot([1.0], [parent["test"][metric]], marker="*", ms=12, color="black", ls="none", label="dense parent")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{metric}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize="small", frameon=False)
    fig.suptitle(f"{parent_id} · {spec.task.name} · {spec.model.label()}: {metric} against measured saving "
                 f"(solid: test, dashed: validation; labels: level)")
    rows = -(-len(labels) // 6)
    fig.tight_layout(rect=(0, 0.06 * rows + 0.02, 1, 1))
    out = Path(output or f"{parent_id}-compression.png")
    fig.savefig(out)
    plt.close(fig)
    return out
