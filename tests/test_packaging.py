"""The kit's packaging: pins agree between pip and conda, and the command line answers."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import yolov7lib

ROOT = Path(__file__).resolve().parents[1]


def _split(requirement: str) -> tuple[str, str]:
    """'Name==1.2' -> ('name', '==1.2'); names normalised as pip does."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    assert match, requirement
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return name, match.group(2).replace(" ", "")


def test_environment_yml_repeats_pyproject_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_reqs = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_reqs = dict(_split(r) for r in pip_section)

    assert conda_reqs == pip_reqs
    assert "python=3.11" in env["dependencies"]
    assert project["requires-python"].startswith(">=3.11")
    # torch and torchvision must be the pair that imports together on this machine kind
    assert pip_reqs["torch"] == "==2.14.1" and pip_reqs["torchvision"] == "==0.29.1"


def test_every_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" in req, f"{req} is not pinned"


def test_setuptools_reads_pyproject_without_a_deprecation(monkeypatch: pytest.MonkeyPatch) -> None:
    """setuptools announces the removal of what it deprecates (`project.license` as a table stops
    building wheels after 2027-02-18): reading the metadata must raise no warning."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)  # the dynamic version is read from yolov7lib/__init__.py relative to here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), "pyproject.toml")
    assert dist.metadata.version == yolov7lib.__version__


def test_the_wheel_holds_every_file_of_the_package_and_nothing_else(tmp_path: Path) -> None:
    """A file the kit reads at run time (the hyp YAMLs, py.typed) that package-data misses is absent
    from an installed wheel only; built from a copy, so the checkout gets no build/ or egg-info."""
    import shutil
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    tracked = _run("git", "-C", str(ROOT), "ls-files", "yolov7lib")
    assert tracked.returncode == 0, tracked.stderr
    files = set(tracked.stdout.split())
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-cache-dir",
    ]
    out = _run(*build, "-w", str(tmp_path / "dist"), str(src))
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("yolov7lib-*.whl")
    with zipfile.ZipFile(wheel) as z:
        packaged = {n for n in z.namelist() if not n.startswith("yolov7lib-")}
        licence = [n for n in z.namelist() if n.endswith("/LICENSE")]
        assert licence and "GNU GENERAL PUBLIC LICENSE" in z.read(licence[0]).decode()  # what `license` names
    assert packaged == files
    assert "yolov7lib/py.typed" in packaged and wheel.name.startswith(f"yolov7lib-{yolov7lib.__version__}-")


def _third_party_imports(package: Path) -> set[str]:
    """Top-level names of the modules the package's source imports that are neither stdlib nor its own."""
    names: set[str] = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {package.name}


def test_every_module_the_package_imports_comes_from_a_declared_dependency() -> None:
    """A module reached only through another package's requirements (PIL through matplotlib) is unpinned
    and can vanish or change under an installed wheel when that package's own requirements change."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_split(r)[0] for r in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = {
        module: providers.get(module)
        for module in _third_party_imports(ROOT / "yolov7lib")
        if not {_split(d)[0] for d in providers.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_console_script_and_module_report_version() -> None:
    script = Path(sys.executable).with_name("yolov7")
    for cmd in ([str(script)], [sys.executable, "-m", "yolov7lib"]):
        out = _run(*cmd, "--version")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"yolov7lib {yolov7lib.__version__}"


def test_help_lists_usage_and_unknown_command_fails() -> None:
    out = _run(sys.executable, "-m", "yolov7lib", "--help")
    assert out.returncode == 0 and "usage: yolov7" in out.stdout
    bad = _run(sys.executable, "-m", "yolov7lib", "no-such-command")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme.split("```")[1], "the README's first command block names `make test`"
    assert re.search(r"^make test\b", ci, re.MULTILINE), ".ci/run runs `make test`"


def test_pre_commit_runs_the_ruff_of_make_lint_without_an_activated_environment() -> None:
    """pre-commit looks an entry's bare command up on PATH, which holds .venv/bin only while the
    environment is activated; the README's set-up (`.venv/bin/pre-commit install`) activates nothing."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = {h["id"]: h["entry"].split() for r in config["repos"] for h in r["hooks"]}
    assert {k: v[:2] for k, v in entries.items()} == {
        "ruff": [".venv/bin/ruff", "check"],
        "ruff-format": [".venv/bin/ruff", "format"],
    }  # relative to the repository's root, where pre-commit runs its hooks
    makefile = (ROOT / "Makefile").read_text()  # ... the same executable as `make lint`'s $(BIN)/ruff
    assert re.search(r"^VENV +:= \.venv\nBIN +:= \$\(CURDIR\)/\$\(VENV\)/bin$", makefile, re.MULTILINE)
    assert "\t$(BIN)/ruff check .\n\t$(BIN)/ruff format --check .\n" in makefile


@pytest.mark.slow
def test_the_readme_training_loop_runs_as_written(tmp_path: Path) -> None:
    """The README's own-training-loop block, run unchanged from a folder holding data/shapes (a small
    generated set), then checked: every batch stepped the optimizer and the EMA, the loss is finite, and
    the evaluation scored the validation images."""
    from yolov7lib.data import synthesize

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    loop = next(b for b in blocks if "for ni, (imgs, targets, _, _) in enumerate(train_loader)" in b)
    root = tmp_path / "data" / "shapes"  # the path the block names
    synthesize(root, n_train=16, n_val=4, img_size=96, seed=1, workers=1, progress=False)
    checks = (
        "import math\n"
        "assert ema.updates == len(train_loader) == 2, ema.updates\n"
        "assert math.isfinite(loss.item()) and loss.item() > 0\n"
        "assert result.images == 4 and result.labels > 0\n"
    )
    script = "import yolov7lib\n" + loop + checks
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
