"""`layerlab export --format mlflow --to DIR|URI`: the store's runs as MLflow runs.

Each layerlab run becomes one MLflow run in one experiment (default ``layerlab``):

- parameters: the spec, flattened (``optim.lr``, ``model.mixer``, ...; a derived run adds ``derived.*``);
- metrics: every recorded series as ``split/name`` at its step (``train/loss``, ``val/accuracy``,
  ``probe/spectra.stable_rank_mean``: a slash inside a name becomes a dot, `metric_key`), and the final
  results as ``final/split/name`` at the last step (``final/test/accuracy``);
- tags: ``suite``, ``task``, ``model``, ``status`` (layerlab's labels), ``layerlab.run_id`` and provenance;
- artifacts: ``spec.json``, the probe arrays as ``probes/STEP/NAME.npy`` and the learning curves as
  ``plots/curves.png`` (``layerlab plot``'s figure).

A second export of the same store finds each run by its ``layerlab.run_id`` tag: a run whose content is
unchanged (the ``layerlab.export`` tag holds its fingerprint) is skipped, one that has grown gets only
the parameters and metric steps MLflow does not have yet (its artifacts are rewritten in place), so
nothing is duplicated. A directory is written as an MLflow file store; ``mlflow-skinny`` also writes to
an MLflow server (``http://HOST:PORT``); database URIs (``sqlite:///...``) need the full ``mlflow``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError
from .exports import ExportRun, ExportSummary, check_suite, require, runs_to_export
from .store import Store

TAG_RUN_ID = "layerlab.run_id"
TAG_EXPORT = "layerlab.export"   # the fingerprint of the content last exported
DEFAULT_EXPERIMENT = "layerlab"
STATUS = {"pending": "SCHEDULED", "running": "RUNNING", "done": "FINISHED", "diverged": "FINISHED",
          "interrupted": "KILLED", "failed": "FAILED"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters at least: C:\ is a path, not a URI
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")          # what MLflow accepts in a key, on every platform
_BATCH = 100                                         # params and tags per log_batch (metrics: 1000)
_MAX_PARAM = 6000


def tracking_uri(target: str) -> str:
    """A directory becomes a ``file:`` URI (the MLflow file store); a URI is kept as given."""
    if _SCHEME.match(target):
        return target
    root = Path(target).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"cannot export to MLflow at {target!r}: it is a file; give a directory (an MLflow "
                          f"file store, made if missing) or a tracking URI such as http://HOST:5000")
    if root.is_dir() and any(root.iterdir()) and not any(root.glob("*/meta.yaml")):
        raise ConfigError(f"cannot export to MLflow at {target!r}: the directory holds other files and no MLflow "
                          f"experiments; give a new or empty directory, or an MLflow file store (such as ./mlruns)")
    return root.as_uri()


def metric_key(split: str, name: str) -> str:
    """``split/name``, with the slashes inside `name` written as dots and characters MLflow refuses in a
    key as ``_``: MLflow's file store keeps a key as a file path, where ``train/probe_time_s`` (a file)
    and ``train/probe_time_s/spectra`` (inside a folder of the same name) cannot both exist."""
    key = _BAD_KEY_CHARS.sub("_", f"{split}/{name.replace('/', '.')}")
    return "/".join(p if p not in ("", ".", "..") else "_" for p in key.split("/"))


@contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE is set: set it while we write one."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if uri.startswith("file:"):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def export_mlflow(store: Store, target: str, *, suite: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                  plots: bool = True) -> ExportSummary:
    """Write every run of `store` (of `suite`) to the MLflow tracking store at `target` (a directory or a
    tracking URI), into `experiment`; returns what was created, updated and left unchanged."""
    require("mlflow", "mlflow", "the MLflow export")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    check_suite(store, suite)
    uri = tracking_uri(target)
    summary = ExportSummary(target=uri)
    with _file_store_allowed(uri):
        try:
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found is not None else client.create_experiment(experiment)
            existing = _runs_by_layerlab_id(client, exp_id)
            for run in runs_to_export(store, suite):
                _export_run(client, exp_id, run, existing.get(run.run_id), summary, store, plots)
        except MlflowException as e:
            raise ConfigError(f"MLflow at {uri} refused the export: {e.message} (mlflow-skinny writes to a "
                              f"directory or an MLflow server, http://HOST:PORT; a sqlite: or database URI needs "
                              f"`pip install mlflow`)") from None
    return summary


def _runs_by_layerlab_id(client, exp_id: str) -> dict:
    out, token = {}, None
    while True:
        page = client.search_runs([exp_id], filter_string=f"tags.`{TAG_RUN_ID}` != ''", max_results=1000,
                                  page_token=token)
        for r in page:
            out.setdefault(r.data.tags[TAG_RUN_ID], r)
        token = page.token
        if not token:
            return out


def _export_run(client, exp_id: str, run: ExportRun, ml, summary: ExportSummary, store: Store, plots: bool) -> None:
    from mlflow.entities import Metric, Param, RunTag

    if ml is not None and ml.data.tags.get(TAG_EXPORT) == run.fingerprint:
        summary.unchanged.append(run.run_id)
        return
    ms = int(run.time_s * 1000)
    if ml is None:
        ml = client.create_run(exp_id, start_time=ms, tags={TAG_RUN_ID: run.run_id}, run_name=run.display_name())
        summary.created.append(run.run_id)
    else:
        summary.updated.append(run.run_id)
    mid = ml.info.run_id
    have_params = ml.data.params
    params = [Param(k, v[:_MAX_PARAM]) for k, v in sorted(run.params.items()) if k not in have_params]
    series = [(metric_key(m["split"], m["name"]), m["step"], m["value"]) for m in run.metrics]
    series += [(metric_key(f"final/{split}", name), run.last_step, v)
               for split, values in sorted(run.results.items()) for name, v in sorted(values.items())]
    have_steps = {key: {h.step for h in client.get_metric_history(mid, key)} for key in ml.data.metrics}
    metrics = [Metric(key, float(v), ms, int(step)) for key, step, v in series
               if v is not None and step not in have_steps.get(key, ())]
    for i in range(0, len(params), _BATCH):
        client.log_batch(mid, params=params[i:i + _BATCH])
    for i in range(0, len(metrics), 1000):
        client.log_batch(mid, metrics=metrics[i:i + 1000])
    _log_artifacts(client, mid, run, summary, store, plots)
    tags = {"suite": ",".join(run.suites), "task": run.task, "model": run.model, "status": run.row["status"],
            "layerlab.git_revision": run.row["git_revision"] or "", "layerlab.device": run.row["device"] or "",
            "layerlab.steps": f"{run.row['step']}/{run.row['total_steps']}"}
    if run.derived:
        tags.update({"layerlab.parent_run_id": run.derived["parent_id"], "layerlab.technique": run.derived["technique"]})
    client.log_batch(mid, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    status = STATUS.get(run.row["status"], "RUNNING")
    if status in ("SCHEDULED", "RUNNING"):
        client.update_run(mid, status=status)
    else:
        client.set_terminated(mid, status, end_time=int(1000 * (run.row["finished"] or run.time_s)))
    client.set_tag(mid, TAG_EXPORT, run.fingerprint)  # last: an export cut short is redone next time


def _log_artifacts(client, mid: str, run: ExportRun, summary: ExportSummary, store: Store, plots: bool) -> None:
    from .plots import plot_run

    with tempfile.TemporaryDirectory(prefix="layerlab-mlflow-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps(run.spec, indent=2, sort_keys=True) + "\n")
        client.log_artifact(mid, str(spec))
        for a in run.arrays:
            if a["file"].is_file():
                client.log_artifact(mid, str(a["file"]), f"probes/{a['step']}")
            else:
                summary.missing_arrays.append(str(a["file"]))
        if plots and run.metrics:
            curves = Path(tmp) / "curves.png"
            plot_run(store, run.run_id, curves)
            client.log_artifact(mid, str(curves), "plots")
