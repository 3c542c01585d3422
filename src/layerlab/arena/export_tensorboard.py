"""`layerlab export --format tensorboard --to DIR`: the store's runs as TensorBoard event files.

One folder per run under DIR, named ``TASK-MODEL-lrLR-seedSEED-RUNID`` (a derived run:
``TASK-MODEL-TECHNIQUELEVEL-RUNID``), holding:

- scalars: every recorded series as ``split/name`` at its step, and the final results as
  ``final/split/name`` at the last step;
- histograms: every one-dimensional probe array (the weight spectra ``spectra/esd.LAYER``, ...) as
  ``probe/NAME`` at the step it was measured (its finite entries; arrays of other shapes are not written);
- text: ``spec`` (the spec as JSON) and ``run`` (status, suites, provenance).

Each folder also holds ``layerlab-run.json`` (the run id and the fingerprint of what was written). A
second export skips a run whose fingerprint is unchanged, and rewrites the folder of one that has grown
(written beside it, then swapped in), so TensorBoard never reads two copies of a series.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..errors import ConfigError
from .exports import ExportRun, ExportSummary, check_suite, require, runs_to_export
from .store import Store

MARKER = "layerlab-run.json"
_TMP_PREFIX = ".layerlab-tmp-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def run_folder_name(run: ExportRun) -> str:
    if run.derived:
        what = f"{run.derived['technique']}{run.derived['level']:g}"
    else:
        what = f"lr{run.spec['optim']['lr']:g}-seed{run.spec['seed']}"
    return _UNSAFE.sub("_", f"{run.task}-{run.model}-{what}-{run.run_id}")


def _existing_folders(logdir: Path) -> dict[str, tuple[Path, str]]:
    """run id -> (its folder, the fingerprint written there), from the markers of an earlier export."""
    out = {}
    for marker in logdir.glob(f"*/{MARKER}"):
        try:
            data = json.loads(marker.read_text())
            out[data["run_id"]] = (marker.parent, data["fingerprint"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def export_tensorboard(store: Store, logdir: str | Path, *, suite: str | None = None) -> ExportSummary:
    """Write every run of `store` (of `suite`) as event files, one folder per run under `logdir`."""
    board = require("torch.utils.tensorboard", "tensorboard", "the TensorBoard export")
    check_suite(store, suite)
    root = Path(logdir).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"cannot export to TensorBoard at {str(logdir)!r}: it is a file; give a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot export to TensorBoard at {str(logdir)!r}: {e.strerror or e}") from None
    for stale in root.glob(f"{_TMP_PREFIX}*"):  # left by an export that was killed
        shutil.rmtree(stale, ignore_errors=True)
    summary = ExportSummary(target=str(root))
    existing = _existing_folders(root)
    for run in runs_to_export(store, suite):
        old = existing.get(run.run_id)
        folder = root / run_folder_name(run)
        if old is not None and old[1] == run.fingerprint and old[0] == folder:
            summary.unchanged.append(run.run_id)
            continue
        if folder.exists() and (old is None or old[0] != folder):
            raise ConfigError(f"cannot export run {run.run_id} to {str(folder)!r}: the folder exists and was not "
                              f"written by layerlab; move it away or export to another directory")
        tmp = root / f"{_TMP_PREFIX}{run.run_id}-{os.getpid()}"
        _write_run(board.SummaryWriter, tmp, run, summary)
        if old is not None:
            shutil.rmtree(old[0])
        os.replace(tmp, folder)
        (summary.updated if old is not None else summary.created).append(run.run_id)
    return summary


def _write_run(writer_class, folder: Path, run: ExportRun, summary: ExportSummary) -> None:
    import numpy as np

    wall = run.time_s
    w = writer_class(log_dir=str(folder), max_queue=1000, flush_secs=3600)
    try:
        w.add_text("spec", _code_block(json.dumps(run.spec, indent=2, sort_keys=True)), 0, walltime=wall)
        w.add_text("run", _code_block(json.dumps(_about(run), indent=2, sort_keys=True)), 0, walltime=wall)
        for m in run.metrics:  # by step: each tag's steps increase, as TensorBoard's reader expects
            if m["value"] is not None:
                w.add_scalar(f"{m['split']}/{m['name']}", m["value"], m["step"], walltime=wall)
        for split, values in sorted(run.results.items()):
            for name, v in sorted(values.items()):
                if v is not None:
                    w.add_scalar(f"final/{split}/{name}", v, run.last_step, walltime=wall)
        for a in run.arrays:
            if not a["file"].is_file():
                summary.missing_arrays.append(str(a["file"]))
                continue
            values = np.load(a["file"], allow_pickle=False)
            if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
                continue
            values = values[np.isfinite(values)]
            if values.size:
                w.add_histogram(f"probe/{a['name']}", values, a["step"], walltime=wall)
    finally:
        w.close()
    (folder / MARKER).write_text(json.dumps({"run_id": run.run_id, "fingerprint": run.fingerprint}) + "\n")


def _about(run: ExportRun) -> dict:
    r = run.row
    return {"run_id": run.run_id, "status": r["status"], "steps": f"{r['step']}/{r['total_steps']}",
            "suites": run.suites, "task": run.task, "model": run.model, "git_revision": r["git_revision"],
            "device": r["device"], "data_checksum": r["data_checksum"], "n_params": r["n_params"],
            "versions": json.loads(r["versions_json"]) if r["versions_json"] else {}, "derived": run.derived}


def _code_block(text: str) -> str:
    """Markdown (TensorBoard renders text summaries as markdown): a code block keeps the JSON as it is."""
    return "\n".join("    " + line for line in text.splitlines())
