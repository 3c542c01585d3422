"""The package a user installs (issue 19, item 3): `python -m build` makes an sdist and a wheel that
hold every data file layerlab reads at run time, and the wheel installs into a fresh virtual
environment, where `layerlab blocks` and a short claim check run.

The fresh environment has no system or project site-packages. Its dependencies are pinned to the
versions of the environment running the tests (a constraints file), so pip takes them from where
that environment's came from (here torch==2.13.0+cpu from this machine's disk) instead of
resolving, say, a multi-GB CUDA build of a newer torch; layerlab itself comes only from the wheel.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# The fastest built-in card (about 2 s, mostly imports): a closed-form [measure] card in float64 that
# trains nothing and needs neither the C++ kernels nor a data set.
CARD = "layernorm-invariances"
CARD_TOL = 1e-10  # its [rule] tolerance

BUILD_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _run(cmd: list[str], *, timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"{' '.join(map(str, proc.args))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def _runtime_files(package: Path) -> set[str]:
    """Every file the package reads at run time besides its modules (suites, claim cards, the paper
    catalogue, C++ kernel sources, ...), as paths relative to src/: taken from the source tree, not
    from pyproject's package-data, so a file that package-data misses is missed here too."""
    return {p.relative_to(package.parent).as_posix() for p in package.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc", ".pyo")}


def _not_source(folder: str, names: list[str]) -> set[str]:
    """What .gitignore leaves out: a build starts from a clean tree, as from a fresh clone (a stale
    egg-info's SOURCES.txt would otherwise put files into the sdist that package-data forgets)."""
    top = {".git", ".venv", ".hypothesis", ".pytest_cache", "build", "dist", "layerlab-runs"}
    return {n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".pyc", ".pyo"))
            or (Path(folder) == ROOT and n in top)}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict:
    """`python -m build`: the sdist, and the wheel built from that sdist (so the wheel also proves the
    sdist complete). The build is isolated, as a user's is: setuptools comes from the package index."""
    if importlib.util.find_spec("build") is None:
        pytest.fail("the 'build' package is missing: pip install build (it is in the test extra: "
                    "pip install -e '.[test]', which `make test` runs)", pytrace=False)
    from layerlab.registry import entries

    blocks = {e.name for e in entries()}  # registered in the tree about to be copied and built
    source = tmp_path_factory.mktemp("source") / "layerlab"
    shutil.copytree(ROOT, source, ignore=_not_source)
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, _explain(proc)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist in {out}: {list(out.iterdir())}"
    return {"wheel": wheels[0], "sdist": sdists[0], "package": source / "src" / "layerlab", "blocks": blocks}


def test_wheel_holds_the_package_and_its_data_files(dist):
    version = _version()
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    data = _runtime_files(dist["package"])
    assert {"layerlab/arena/suites/quick.toml", f"layerlab/claims/cards/{CARD}.toml",
            "layerlab/claims/papers/block.toml", "layerlab/kernels/delta_rule.cpp"} <= data
    missing = sorted(data - names)
    assert not missing, f"data files missing from the wheel (package-data in pyproject.toml): {missing}"
    modules = {p.relative_to(dist["package"].parent).as_posix() for p in dist["package"].rglob("*.py")}
    assert not sorted(modules - names), f"modules missing from the wheel: {sorted(modules - names)}"
    assert {n.split("/")[0] for n in names} == {"layerlab", f"layerlab-{version}.dist-info"}
    # The torch requirement names no build (no local label such as +cpu, no direct URL to a CPU
    # wheel): pip is free to take a CUDA build, or keep the one a user has.
    meta = zipfile.ZipFile(dist["wheel"]).read(f"layerlab-{version}.dist-info/METADATA").decode()
    torch_req = [line for line in meta.splitlines() if line.startswith("Requires-Dist: torch")]
    assert len(torch_req) == 1 and "+" not in torch_req[0] and "@" not in torch_req[0], torch_req


def test_sdist_holds_the_source_tree(dist):
    prefix = f"layerlab-{_version()}/"
    names = set(tarfile.open(dist["sdist"]).getnames())
    wanted = {prefix + "src/" + f for f in _runtime_files(dist["package"])}
    wanted |= {prefix + f for f in ("README.md", "pyproject.toml", "MANIFEST.in", "Makefile",
                                    "tests/conftest.py", "tests/test_packaging.py", "tests/claims")}
    missing = sorted(wanted - names)
    assert not missing, f"missing from the sdist (MANIFEST.in, package-data): {missing}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def _constraints(path: Path) -> Path:
    """Pin every distribution of the running environment (but layerlab) to its version here."""
    pins = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name and name.lower() != "layerlab":
            pins.setdefault(name.lower(), f"{name}=={d.version}")
    path.write_text("\n".join(sorted(pins.values())) + "\n")
    return path


@pytest.fixture
def venv(tmp_path):
    """A path for the fresh environment, removed afterwards (torch makes it about 1.3 GB)."""
    path = tmp_path / "venv"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_wheel_installs_and_runs_in_a_fresh_environment(dist, venv, tmp_path):
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, _explain(proc)
    # This environment's pip installs into the new one (--python): no pip inside it to bootstrap.
    # --no-compile: byte-compiling torch's sources would take longer than installing them.
    proc = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-compile",
                 "--disable-pip-version-check", "-q", "-c", str(_constraints(tmp_path / "constraints.txt")),
                 str(dist["wheel"])], timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, _explain(proc)

    # The environment's own byte code is written on first import (PYTHONDONTWRITEBYTECODE dropped):
    # installed with --no-compile, each command would otherwise compile torch's modules again.
    env = {k: v for k, v in os.environ.items() if k not in (
        "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV")}
    env.update(VIRTUAL_ENV=str(venv), PATH=str(bindir) + os.pathsep + env.get("PATH", ""),
               PYTHONNOUSERSITE="1")
    run = dict(cwd=tmp_path, env=env, timeout=RUN_TIMEOUT_S)

    # Fresh: layerlab comes from the wheel, and nothing from the source tree or the test environment.
    proc = _run([str(python), "-c", "import json, sys, layerlab; print(json.dumps([layerlab.__file__, sys.path]))"], **run)
    assert proc.returncode == 0, _explain(proc)
    where, path = json.loads(proc.stdout)
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    here = (ROOT, Path(sys.prefix).resolve())  # the source tree, and the environment running the tests
    leaks = [p for p in path if p and any(Path(p).resolve().is_relative_to(h) for h in here)]
    assert not leaks, f"the fresh environment sees the project or the test environment: {leaks}"

    proc = _run([str(bindir / "layerlab"), "blocks"], **run)
    assert proc.returncode == 0, _explain(proc)
    rows = [[c.strip() for c in line.split("│")] for line in proc.stdout.splitlines()]
    listed = {row[2] for row in rows if len(row) > 5}  # the table: kind │ name │ paper │ params │ file
    expected = dist["blocks"]
    assert len(expected) > 10
    absent = sorted(expected - listed)
    assert not absent, f"`layerlab blocks` from the wheel lacks {absent}:\n{proc.stdout[-3000:]}"

    store = tmp_path / "store"
    proc = _run([str(bindir / "layerlab"), "check", CARD, "--store", str(store)], **run)
    assert proc.returncode == 0, _explain(proc)
    rows = [[c.strip() for c in line.split("│")] for line in proc.stdout.splitlines()]
    verdicts = [row[2] for row in rows if len(row) > 3 and row[1] == CARD]  # the verdicts table: card │ verdict │ ...
    assert verdicts == ["supported"], proc.stdout[-3000:]
    proc = _run([str(bindir / "layerlab"), "verdicts", "--store", str(store), "--card", CARD, "--format", "json"], **run)
    assert proc.returncode == 0, _explain(proc)
    (verdict,) = json.loads(proc.stdout)
    assert verdict["card_id"] == CARD and verdict["verdict"] == "supported", verdict
    assert 0 <= verdict["observed"] <= CARD_TOL, verdict
