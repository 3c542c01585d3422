"""Power-law α: layerlab's WeightWatcher-compatible fit against WeightWatcher itself, in agreement
and in time (issue 16 target 3, issue 17 item 1).

    python benchmarks/lens_spectra.py [--ww-python /work/wwenv/bin/python] [--seeds 3] [--repeats 7]
                                      [--threads 2]

WeightWatcher (the ``weightwatcher`` pip package) is not a layerlab dependency: it runs in its own
virtual environment, given by ``--ww-python`` (``python3 -m venv /work/wwenv &&
/work/wwenv/bin/pip install weightwatcher torch``), in a subprocess that reads the same matrices
from ``.npy`` files. Without it the script reports layerlab's numbers only.

Matrices, 1024 x 512 float32 (a ``torch.nn.Linear(512, 1024)`` weight, what WeightWatcher
analyses), ``--seeds`` of each kind: ``gaussian`` (no heavy tail: the Marchenko-Pastur control);
``student_t<nu>``, i.i.d. Student-t entries with ``nu`` = 1.5, 2, 3, 4 (infinite variance for
``nu <= 2``); ``pareto<a>``, i.i.d. symmetric Pareto entries ``±U^(-1/a)``, ``a`` = 1, 2, 3;
``trained_like``: ``U diag(s) Vᵀ + G / √N`` with ``s_k = 3 k^(-1/2)`` (a decaying signal spectrum)
plus Gaussian noise, the shape of a trained layer's ESD.

Agreement: WeightWatcher's ``analyze()`` (defaults: its own ``WWFit``) α, and its norm metrics,
against ``power_law(esd(W, normalize=False), method="weightwatcher")`` and
``quality_metrics``; also with ``fix_fingers="clip_xmax"``. Max |Δ| per kind (target |Δα| <= 0.01),
and how far the default Clauset et al. fit (two-sided KS) is from WeightWatcher's α.

Time on 1024 x 512 (medians of ``--repeats``, ``--threads`` threads on both sides): WeightWatcher's
``analyze()`` on the one-layer model, and its floor (``svd_vals`` + ``WWFit``, the two calls
``analyze()`` makes for α), against layerlab's α (the Gram-matrix ``esd`` + the fit), and the
SVD ``esd`` + fit and the Clauset et al. default fit for context.

Part 2 (also alone with ``--instruments-only``): the whole-model instruments (``model_summary``
plain, with ``fix_fingers`` and with ``randomize``; ``layer_spectra``; ``tail_compare``'s tests on
one layer's ESD) on benchmarks/lens.py's model (a), in seconds and in its training steps.
Timings on a loaded machine vary; compare ratios within one run. This script asserts nothing
about time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from layerlab.lens import spectra

N, M = 1024, 512
METRICS = ("log_norm", "log_spectral_norm", "alpha_weighted", "log_alpha_norm", "stable_rank")

WW_SCRIPT = textwrap.dedent('''
    import json, sys, time, statistics, warnings, logging, io, contextlib
    warnings.simplefilter("ignore")
    import numpy as np, torch
    torch.set_num_threads(int(sys.argv[2]))
    with contextlib.redirect_stderr(io.StringIO()):
        import weightwatcher as ww
        from weightwatcher import RMT_Util
        from weightwatcher.WW_powerlaw import WWFit
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    logging.disable(logging.WARNING)
    task = json.load(open(sys.argv[1]))
    out = {"version": ww.__version__, "results": {}, "times": {}}

    def model_of(w):
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data = torch.from_numpy(w)
        return torch.nn.Sequential(lin)

    for name, path in task["matrices"].items():
        w = np.load(path)
        watcher = ww.WeightWatcher(model=model_of(w))
        with contextlib.redirect_stdout(io.StringIO()):
            d = watcher.analyze()
            f = watcher.analyze(fix_fingers="clip_xmax")
        row = {k: float(d[k][0]) for k in ["alpha", "xmin", "D", "num_pl_spikes"] + task["metrics"]}
        row["alpha_clip_xmax"] = float(f["alpha"][0])
        row["num_fingers"] = float(f["num_fingers"][0])
        out["results"][name] = row

    print(json.dumps(out), flush=True)

    # then a timing server: one call per request, so the caller interleaves both sides' calls
    w = np.load(task["timed"])
    watcher = ww.WeightWatcher(model=model_of(w))

    def floor():
        sv = RMT_Util.svd_vals(w.astype(float), method="fast")
        ev = np.sort(sv * sv)
        with contextlib.redirect_stdout(io.StringIO()):
            return WWFit(ev[ev > 1e-5]).alpha

    def analyze():
        with contextlib.redirect_stdout(io.StringIO()):
            return float(watcher.analyze()["alpha"][0])

    calls = {"analyze": analyze, "floor": floor}
    for line in sys.stdin:
        what = line.strip()
        if what not in calls:
            break
        t = time.perf_counter(); calls[what](); print(time.perf_counter() - t, flush=True)
''')


def matrices(seeds: int) -> dict[str, np.ndarray]:
    out = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        out[f"gaussian/{seed}"] = rng.standard_normal((N, M))
        for nu in (1.5, 2, 3, 4):
            out[f"student_t{nu}/{seed}"] = rng.standard_t(nu, size=(N, M))
        for a in (1, 2, 3):
            out[f"pareto{a}/{seed}"] = rng.choice([-1.0, 1.0], size=(N, M)) * (1 - rng.random((N, M))) ** (-1 / a)
        u, _ = np.linalg.qr(rng.standard_normal((N, M)))
        v, _ = np.linalg.qr(rng.standard_normal((M, M)))
        s = 3 * np.arange(1, M + 1) ** -0.5
        out[f"trained_like/{seed}"] = (u * s) @ v.T + rng.standard_normal((N, M)) / math.sqrt(N)
    return {k: v.astype(np.float32) for k, v in out.items()}


def ours(w: np.ndarray) -> dict[str, float]:
    lam = spectra.esd(torch.from_numpy(w), normalize=False)
    fit = spectra.power_law(lam, method="weightwatcher")
    row = {"alpha": fit.alpha, "xmin": fit.xmin, "D": fit.ks_distance, "num_pl_spikes": fit.n_tail}
    row.update({k: v for k, v in spectra.quality_metrics(lam, fit.alpha).items() if k in METRICS})
    clipped = spectra.power_law(lam, method="weightwatcher", fix_fingers="clip_xmax")
    row["alpha_clip_xmax"], row["num_fingers"] = clipped.alpha, clipped.n_fingers
    row["alpha_csn"] = spectra.power_law(lam).alpha
    return row


class WWSide:
    """WeightWatcher in its own interpreter: the agreement results, then one timed call per request."""

    def __init__(self, python: str, paths: dict[str, str], timed: str, threads: int, tmp: Path):
        task = tmp / "task.json"
        task.write_text(json.dumps({"matrices": paths, "timed": timed, "metrics": list(METRICS)}))
        script = tmp / "ww_side.py"
        script.write_text(WW_SCRIPT)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen([python, str(script), str(task), str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("WeightWatcher side failed:\n" + self.proc.stderr.read()[-3000:])
        self.results = json.loads(line)

    def time(self, what: str) -> float:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def timed_call(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def instruments_in_steps(repeats: int) -> None:
    """Part 2: the whole-model instruments on benchmarks/lens.py's model (a), in its training steps."""
    sys.path.insert(0, str(Path(__file__).parent))
    from lens import classifier_case, step_seconds, timed

    from layerlab.lens import tail_compare

    device = torch.device("cpu")
    case = classifier_case(device, 512, 1.0)
    model, batch, task = case["model"], case["batch"], case["task"]
    step = step_seconds(model, lambda m: task.loss(m(batch.inputs), batch), device)
    largest = max((p for p in model.parameters() if p.dim() == 2), key=lambda p: p.numel()).detach()
    lam = spectra.esd(largest, normalize=False)  # the largest matrix's ESD
    rows = [
        ("model_summary (weightwatcher fit)", lambda: spectra.model_summary(model)),
        ("model_summary, fix_fingers='clip_xmax'", lambda: spectra.model_summary(model, fix_fingers="clip_xmax")),
        ("model_summary, randomize=True (traps)", lambda: spectra.model_summary(model, randomize=True)),
        ("layer_spectra (CSN fit, SVD; for comparison)", lambda: spectra.layer_spectra(model)),
        ("likelihood_ratio vs truncated_power_law, one ESD",
         lambda: tail_compare.likelihood_ratio(lam, "truncated_power_law", method="weightwatcher")),
        ("likelihood_ratio vs lognormal, one ESD", lambda: tail_compare.likelihood_ratio(lam, "lognormal",
                                                                                          method="weightwatcher")),
    ]
    print(f"\nInstruments on {case['name']}: one training step = {step * 1e3:.1f} ms")
    print("| instrument | seconds | training steps |")
    print("|---|---|---|")
    for label, fn in rows:
        t, _, _ = timed(fn, device, repeats=repeats)
        print(f"| {label} | {t:.3f} | {t / step:.1f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ww-python", default="/work/wwenv/bin/python")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--instruments-only", action="store_true", help="part 2 only (no WeightWatcher)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.instruments_only:
        return instruments_in_steps(args.repeats)
    mats = matrices(args.seeds)
    timed_key = "student_t3/0"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths = {}
        for k, w in mats.items():
            paths[k] = str(tmp / (k.replace("/", "_") + ".npy"))
            np.save(paths[k], w)
        ww = None
        if Path(args.ww_python).exists():
            ww = WWSide(args.ww_python, paths, paths[timed_key], args.threads, tmp)
        else:
            print(f"WeightWatcher: {args.ww_python} not found; layerlab's numbers only (see the module docstring)")
        mine = {k: ours(w) for k, w in mats.items()}

        if ww is not None:
            res = ww.results["results"]
            print(f"Agreement with WeightWatcher {ww.results['version']} analyze(), {N} x {M} float32, "
                  f"{args.seeds} seeds per kind: max |layerlab - WeightWatcher| (alpha: target <= 0.01)")
            cols = ("alpha", "alpha_clip_xmax") + METRICS
            print("| kind | alpha (ours) | " + " | ".join(f"Δ {c}" for c in cols)
                  + " | fingers (ours/WW) | max |α_csn − α_WW| |")
            print("|---" * (len(cols) + 4) + "|")
            for kind in dict.fromkeys(k.split("/")[0] for k in mats):
                keys = [k for k in mats if k.split("/")[0] == kind]
                deltas = [max(abs(mine[k][c] - res[k][c]) for k in keys) for c in cols]
                alphas = ", ".join(f"{mine[k]['alpha']:.3f}" for k in keys)
                fingers = ", ".join(f"{mine[k]['num_fingers']}/{res[k]['num_fingers']:.0f}" for k in keys)
                csn = max(abs(mine[k]["alpha_csn"] - res[k]["alpha"]) for k in keys)
                print(f"| {kind} | {alphas} | " + " | ".join(f"{x:.1e}" for x in deltas) + f" | {fingers} | {csn:.3f} |")
            worst = max(abs(mine[k]["alpha"] - res[k]["alpha"]) for k in mats)
            print(f"max |Δα| over all {len(mats)} matrices: {worst:.2e}")
            print("(WeightWatcher reports num_fingers = k - 1 when it drops the k largest eigenvalues; ours is k)")

        w = torch.from_numpy(mats[timed_key])
        ours_calls = {
            "layerlab: Gram esd + weightwatcher fit":
                lambda: spectra.power_law(spectra.esd(w, normalize=False), method="weightwatcher"),
            "  of which the Gram esd": lambda: spectra.esd(w, normalize=False),
            "layerlab: SVD esd + weightwatcher fit":
                lambda: spectra.power_law(spectra.esd(w, normalize=False, method="svd"), method="weightwatcher"),
            "layerlab: Gram esd + CSN fit (default)": lambda: spectra.power_law(spectra.esd(w)),
        }
        times: dict[str, list[float]] = {k: [] for k in ours_calls}
        if ww is not None:
            times.update({"WeightWatcher analyze()": [], "WeightWatcher svd_vals + WWFit": []})
        for fn in ours_calls.values():
            fn()  # warm-up
        # rounds, each calling every form once, so a load that drifts hits both sides alike
        for _ in range(args.repeats):
            for label, fn in ours_calls.items():
                times[label].append(timed_call(fn))
            if ww is not None:
                times["WeightWatcher analyze()"].append(ww.time("analyze"))
                times["WeightWatcher svd_vals + WWFit"].append(ww.time("floor"))
        if ww is not None:
            ww.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nTime of alpha on one {N} x {M} float32 matrix ({timed_key}), {args.threads} threads, "
          f"median (min) of {args.repeats} interleaved rounds:")
    print("| what | seconds | WeightWatcher analyze() / this | WW floor (svd_vals + WWFit) / this |")
    print("|---|---|---|---|")
    for label, t in med.items():
        r1 = f"{med['WeightWatcher analyze()'] / t:.2f}x" if ww else "-"
        r2 = f"{med['WeightWatcher svd_vals + WWFit'] / t:.2f}x" if ww else "-"
        print(f"| {label} | {t:.4f} ({min(times[label]):.4f}) | {r1} | {r2} |")
    instruments_in_steps(args.repeats)


if __name__ == "__main__":
    sys.exit(main())
