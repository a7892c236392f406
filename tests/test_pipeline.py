"""The pipeline's glue: params.yaml profiles are consistent with dvc.yaml's fixed lists, and stage
settings resolve the way the notebooks expect."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from yolov7lib.pipeline import (
    STAGES,
    load_params,
    notebook_parameters,
    objectness_path,
    run_stage,
    split_item,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
PROFILES = [k for k, v in PARAMS.items() if isinstance(v, dict) and "data" in v]


def test_ablation_items_are_the_catalogue_times_the_seeds() -> None:
    catalogue = PARAMS["ablation_catalogue"]
    items = PARAMS["ablation_variants"]
    assert len(items) == len(set(items))
    assert {split_item(i)[0] for i in items} == set(catalogue)
    for profile in PROFILES:
        ablations = PARAMS[profile].get("ablations")
        if ablations:
            assert set(ablations["variants"]) <= set(catalogue), profile
            for v in ablations["variants"]:
                for s in ablations["seeds"]:
                    assert f"{v}-s{s}" in items, (profile, v, s)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_trains_only_listed_models_with_known_architectures(profile: str) -> None:
    from yolov7lib.models import list_models

    runs = PARAMS[profile]["train"]["runs"]
    assert set(runs) <= set(PARAMS["models"])
    known = set(list_models())
    for name, run in runs.items():
        assert run["model"] in known or Path(run["model"]).suffix == ".yaml", (profile, name)
    for variant in (PARAMS[profile].get("ablations") or {}).get("variants", []):
        assert PARAMS["ablation_catalogue"][variant]["model"] in known


def test_every_hyp_override_names_a_known_hyperparameter() -> None:
    """The trainer adds `hyp_overrides` to the loaded hyperparameters as they are: a misspelt key (say
    `aux_asign`) would train the variant with the default value and fill its table row all the same."""
    from yolov7lib.configs import load_hyp

    known = load_hyp("p5").keys()
    blocks = {f"ablation_catalogue.{k}": v for k, v in PARAMS["ablation_catalogue"].items()}
    for profile in PROFILES:
        blocks[f"{profile}.ablations.common"] = (PARAMS[profile].get("ablations") or {}).get("common", {})
        for name, run in PARAMS[profile]["train"]["runs"].items():
            blocks[f"{profile}.train.runs.{name}"] = run
    for where, block in blocks.items():
        unknown = set(block.get("hyp_overrides") or {}) - known
        assert not unknown, f"params.yaml {where}: hyp_overrides names no hyperparameter: {sorted(unknown)}"


def test_every_catalogue_row_is_a_row_of_the_papers_tables() -> None:
    """The `ablations` stage resolves these only after every ablation run has finished."""
    from yolov7lib import paper

    for variant, entry in PARAMS["ablation_catalogue"].items():
        assert entry["rows"], variant
        for table, row_id in entry["rows"]:
            paper.get_table(table).by_id(row_id)  # KeyError naming the table's rows otherwise


def test_ablation_settings_merge_common_then_variant() -> None:
    name, settings = load_params(ROOT / "params.yaml", "default")
    item = f"{settings['ablations']['variants'][0]}-s{settings['ablations']['seeds'][0]}"
    params = notebook_parameters("ablation", item, name, settings)
    variant = PARAMS["ablation_catalogue"][split_item(item)[0]]
    common = settings["ablations"]["common"]
    assert params["model"] == variant["model"] and params["seed"] == settings["ablations"]["seeds"][0]
    assert params["epochs"] == common["epochs"]
    for k, v in common.get("hyp_overrides", {}).items():
        assert params["hyp_overrides"][k] == variant.get("hyp_overrides", {}).get(k, v)
    assert params["metrics_out"] == f"reports/metrics/ablations/{item}.json"
    # what the notebook writes is what dvc.yaml declares for the stage
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["ablation"]["do"]
    declared = {
        next(iter(e)).replace("${item}", item) for key in ("outs", "metrics", "plots") for e in stage[key]
    }
    written = {params["metrics_out"], params["metrics_out"][:-5] + ".csv", params["objectness_out"]}
    assert declared == written


def test_skipped_ablation_items_write_every_declared_output(tmp_path, monkeypatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    active = set(PARAMS["default"]["ablations"]["variants"])
    inactive = next(i for i in PARAMS["ablation_variants"] if split_item(i)[0] not in active)
    assert run_stage("ablation", inactive, profile="default") == 0
    marker = json.loads((tmp_path / "reports/metrics/ablations" / f"{inactive}.json").read_text())
    assert marker["skipped"] and marker["stage"] == "ablation"
    maps = torch.load(tmp_path / objectness_path(inactive), weights_only=True)
    assert maps["skipped"] and maps["item"] == inactive


def test_split_item_and_unknown_names() -> None:
    assert split_item("t6-lead-guided-s1") == ("t6-lead-guided", 1)
    with pytest.raises(KeyError, match="VARIANT-sSEED"):
        split_item("t6-base")
    with pytest.raises(KeyError, match="unknown stage"):
        run_stage("nope")
    with pytest.raises(KeyError, match="profile 'nope'") as err:
        load_params(ROOT / "params.yaml", "nope")
    listed = str(err.value).split("known profiles: ")[1].rstrip("'\"").split(", ")
    assert sorted(listed) == sorted(PROFILES)  # the catalogue of ablation variants is not a profile
    with pytest.raises(KeyError, match="profile 'ablation_catalogue'"):
        load_params(ROOT / "params.yaml", "ablation_catalogue")


def test_items_outside_the_profile_write_skip_markers(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    inactive = next(m for m in PARAMS["models"] if m not in PARAMS["default"]["train"]["runs"])
    assert run_stage("train", inactive, profile="default") == 0
    marker = json.loads((tmp_path / "reports/metrics/train" / f"{inactive}.json").read_text())
    assert marker["skipped"] and marker["profile"] == "default"
    assert (tmp_path / "runs/train" / inactive / "SKIPPED.json").is_file()
    assert (tmp_path / "reports/metrics/train" / f"{inactive}.csv").read_text().startswith("epoch,")


def test_a_stage_outside_a_checkout_is_refused_before_anything_is_written(tmp_path, monkeypatch) -> None:
    """An installed wheel has no notebooks: a stage run from a folder without notebooks/ (params.yaml
    given, or copied there) says to run from a checkout, and leaves the folder as it was."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(FileNotFoundError, match=r"notebooks/01-data\.ipynb not found.*checkout"):
        run_stage("data", profile="default")
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # no runs/notebooks left behind


def test_every_stage_notebook_exists_or_is_not_in_dvc_yaml() -> None:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in dvc:
        assert stage in STAGES, stage
        assert (ROOT / "notebooks" / STAGES[stage].notebook).is_file(), stage


def _stage_paths(entries: list) -> list[str]:
    """The paths of a dvc.yaml deps or outs list (an entry is a path or {path: options})."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def test_every_stage_that_reads_the_data_depends_on_its_manifest_not_its_bytes() -> None:
    """The generated images differ in a few pixels between CPU models, their manifest does not
    (tests/test_data_synth.py); a stage that depended on data/shapes itself would rerun on every other
    CPU. The data stage writes the manifest where every profile says (`data.manifest_out`)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    data_outs = _stage_paths(stages["data"]["outs"])
    manifest = "reports/metrics/data_manifest.json"
    assert "data/shapes" in data_outs and manifest in data_outs
    assert {PARAMS[profile]["data"]["manifest_out"] for profile in PROFILES} == {manifest}
    readers = set()
    for name, stage in stages.items():
        body = stage.get("do", stage)
        deps = _stage_paths(body.get("deps", []))
        assert "data/shapes" not in deps, name
        if manifest in deps:
            readers.add(name)
    assert readers == {"train", "ablation", "evaluate"}


def _declared_parameters(notebook: Path) -> list[str]:
    """The names the notebook's `parameters` cell assigns, read with Python's own parser."""
    cells = json.loads(notebook.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_papermill_sees_every_parameter(notebook: str) -> None:
    """papermill's own reading of the parameters cell (what `papermill --help-notebook` shows and what it
    checks passed parameters against) finds every parameter the cell assigns; it skips a line with more
    than one '=', so a comment like `# 0 = whole epochs` hides its parameter and makes every run warn
    "Passed unknown parameter"."""
    import papermill

    path = ROOT / "notebooks" / notebook
    declared = _declared_parameters(path)
    assert declared, f"{notebook} has an empty parameters cell"
    assert list(papermill.inspect_notebook(str(path))) == declared


def _papermill_parameters(args: list[str]) -> dict:
    """The parameters a papermill command line passes, read as papermill's own CLI reads them."""
    from papermill.cli import _resolve_type

    passed, i = {}, 0
    while i < len(args):
        if args[i] in ("-p", "--parameters"):
            passed[args[i + 1]] = _resolve_type(args[i + 2])
            i += 3
        elif args[i] in ("-y", "--parameters_yaml"):
            passed.update(yaml.safe_load(args[i + 1]))
            i += 2
        else:
            i += 1
    return passed


def test_documented_papermill_commands_pass_parameters_of_the_notebooks_types() -> None:
    """Every papermill command of README and notebooks/README.md passes parameters the notebook declares,
    each of its default's kind: `-p` turns anything but a number, True, False or None into a string, so a
    list given with `-p` (`-p models '["yolov7"]'`) reaches the notebook as text."""
    import re
    import shlex

    commands = []
    for doc in ("README.md", "notebooks/README.md"):
        text = (ROOT / doc).read_text()
        commands += re.findall(r"^(?:\.venv/bin/)?papermill (.+?)(?:\s+#.*)?$", text, flags=re.M)
        commands += re.findall(r"`(?:\.venv/bin/)?papermill ([^`]+)`", text)
    assert any("-y" in c for c in commands), "no documented example of a list parameter (-y)"
    for command in commands:
        args = shlex.split(command)
        cells = json.loads((ROOT / args[0]).read_text())["cells"]
        cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        defaults = {
            t.id: ast.literal_eval(node.value)
            for node in ast.parse("".join(cell["source"])).body
            if isinstance(node, ast.Assign)
            for t in node.targets
        }
        for name, value in _papermill_parameters(args[2:]).items():
            assert name in defaults, (command, name)
            default = defaults[name]
            number = isinstance(default, int | float) and not isinstance(default, bool)
            assert isinstance(value, (int, float) if number else type(default)), (command, name, value)


@pytest.mark.slow
def test_papermill_runs_the_training_notebook_with_a_parameter(tmp_path: Path) -> None:
    """The README's `papermill notebooks/02-train.ipynb out.ipynb -p epochs 1`, as a user types it (2
    epochs here, one more than the notebook's default, so that the parameter visibly takes effect)."""
    import subprocess
    import sys

    out, metrics = tmp_path / "out.ipynb", tmp_path / "train.json"
    notebook = str(ROOT / "notebooks" / "02-train.ipynb")
    where = ["-p", "project", str(tmp_path / "train"), "-p", "metrics_out", str(metrics)]
    cmd = [sys.executable, "-m", "papermill", notebook, str(out), "-p", "epochs", "2", *where]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(metrics.read_text())
    assert record["epochs"] == 2 and (tmp_path / "train" / "smoke" / "weights" / "last.pt").is_file()
    assert len((tmp_path / "train" / "smoke" / "results.csv").read_text().splitlines()) == 1 + 2
    executed = json.loads(out.read_text())
    assert all(c.get("outputs") is not None for c in executed["cells"] if c["cell_type"] == "code")


def _committed_outputs() -> list[str]:
    """Every `cache: false` output of dvc.yaml (foreach items expanded): the files a clone must carry."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        items = [None]
        if "foreach" in stage:
            items = PARAMS[stage["foreach"].strip("${}")]
            stage = stage["do"]
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                if isinstance(entry, dict):
                    path, opts = next(iter(entry.items()))
                    if (opts or {}).get("cache") is False:
                        paths += [path if item is None else path.replace("${item}", item) for item in items]
    return paths


def test_git_keeps_every_committed_output_and_ignores_the_environment(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    outputs = _committed_outputs()
    assert any(p.endswith(".objectness.pt") for p in outputs) and len(outputs) > 100
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"], input="\n".join(outputs), text=True,
        capture_output=True, cwd=ROOT, check=False,
    ).stdout.split()  # fmt: skip
    assert ignored == [], f"outputs DVC expects in git are ignored by .gitignore: {ignored[:5]}"
    paths = [".venv", "runs/train/x/weights/last.pt", "data/shapes/data.yaml"]
    if not (ROOT / ".venv").is_symlink():  # git looks at no path beyond a link (README: a shared .venv)
        paths.append(".venv/bin/python")
    for path in paths:
        check = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
        assert check.returncode == 0, f"{path} is not ignored"
    # ... and so is a `.venv` that is a link to an environment elsewhere (one once slipped into a commit):
    # a scratch repository with the project's .gitignore, where git sees the link as a file
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    (tmp_path / ".venv").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    check = subprocess.run(["git", "check-ignore", "-q", ".venv"], cwd=tmp_path, check=False)
    assert check.returncode == 0, "a .venv link is not ignored"


def test_torchrun_command_passes_every_option_that_differs_from_the_default() -> None:
    """The training notebook's torchrun launch (nproc > 1) must train with the options it was given:
    `workers: 0` (a profile's value, falsy) once fell back to the trainer's default of 2."""
    from dataclasses import asdict

    from yolov7lib.cli import build_parser
    from yolov7lib.engine.trainer import TrainOptions
    from yolov7lib.pipeline import torchrun_command

    options = dict(model="yolov7-tiny", data="data/coco/coco.yaml", hyp="tiny", epochs=1, batch=4, img=160,
                   workers=0, seed=0, device="", project="runs/train", name="yolov7-tiny", exist_ok=True,
                   max_batches=0, hyp_overrides={}, sync_bn=True, noval=False)  # fmt: skip
    cmd = torchrun_command(options, 2)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    train_args = cmd[cmd.index("train") + 1 :]
    assert "--workers=0" in train_args and "--sync-bn" in train_args and "--exist-ok" in train_args
    parsed = vars(build_parser().parse_args(["train", *train_args]))
    given = {k: v for k, v in parsed.items() if k in asdict(TrainOptions()) and v is not None}
    expected = {k: v for k, v in options.items() if k != "hyp_overrides"}
    assert asdict(TrainOptions(**given)) == asdict(TrainOptions(**expected))
    with pytest.raises(ValueError, match="hyp_overrides"):
        torchrun_command({"hyp_overrides": {"lr0": 0.1}}, 2)
    with pytest.raises(ValueError, match="plots"):
        torchrun_command({"plots": False}, 2)


@pytest.mark.slow
def test_evaluation_notebook_reads_a_validation_list_file(tmp_path: Path) -> None:
    """COCO's coco.yaml names its splits by list files (val2017.txt), not folders: the evaluation
    notebook's example images must come from the list (a folder glob found none and the figure failed)."""
    import subprocess
    import sys

    from yolov7lib.data import synthesize

    doc = yaml.safe_load(synthesize(tmp_path, n_train=2, n_val=3, img_size=64, progress=False).read_text())
    images = sorted((tmp_path / "images" / "val").glob("*.jpg"))
    (tmp_path / "val.txt").write_text("".join(f"./images/val/{p.name}\n" for p in images))
    listed = tmp_path / "listed.yaml"
    listed.write_text(yaml.safe_dump({"train": "images/train", "val": "val.txt", "names": doc["names"]}))
    out, figure, metrics = tmp_path / "out.ipynb", tmp_path / "detections.png", tmp_path / "eval.json"
    params = {"data": str(listed), "img": 64, "examples": 2, "settings": [["fp32", 0.65]],
              "project": str(tmp_path / "val"), "json_out": str(metrics),
              "figure_out": str(figure)}  # fmt: skip
    notebook = str(ROOT / "notebooks" / "04-evaluate.ipynb")
    cmd = [sys.executable, "-m", "papermill", notebook, str(out), "-y", json.dumps(params)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert figure.is_file() and json.loads(metrics.read_text())["table10"]


def _scalar_leaves(block: dict, prefix: str) -> list[tuple[str, object]]:
    """(dotted key, value) of every scalar in a params block, depth first."""
    leaves = []
    for key, value in block.items():
        if isinstance(value, dict):
            leaves += _scalar_leaves(value, f"{prefix}.{key}")
        elif isinstance(value, (bool, int, float, str)):
            leaves.append((f"{prefix}.{key}", value))
    return leaves


def _set_params_cases() -> list[tuple[str, object]]:
    """One scalar of every section of every profile (the first one found), and the first of the shared
    ablation hyperparameters: what a user changes with `dvc exp run -S`."""
    cases = []
    for profile in PROFILES:
        for section, block in PARAMS[profile].items():
            leaves = _scalar_leaves(block, f"{profile}.{section}") if isinstance(block, dict) else []
            cases += leaves[:1]
            overrides = [leaf for leaf in leaves if ".hyp_overrides." in leaf[0]]
            cases += overrides[:1]
    return cases


@pytest.mark.parametrize(("key", "value"), _set_params_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_dvc_set_param_changes_exactly_the_named_parameter(tmp_path: Path, key: str, value: object) -> None:
    """`dvc exp run -S default.figures.seed=1` edits params.yaml through DVC's own code, which does not keep
    YAML anchors: with `small: {<<: *default, ...}` the edit was written back to the shared block, then
    overwritten with small's and paper's unchanged copies, so the experiment silently ran the old value
    (and `-S paper.figures.seed=1` changed the default profile's figures too). Each profile is written
    out in full; `test_profiles_repeat_the_default_settings_they_do_not_change` keeps them in step."""
    hydra = pytest.importorskip("dvc.utils.hydra")
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    if isinstance(value, bool):
        new = not value
    else:
        new = value + 1 if isinstance(value, (int, float)) else f"{value}x"
    hydra.apply_overrides(path, [f"{key}={json.dumps(new)}"])
    expected = json.loads(json.dumps(PARAMS))  # no block shared between profiles, as a user means it
    *parents, last = key.split(".")
    block = expected
    for part in parents:
        block = block[part]
    block[last] = new
    assert yaml.safe_load(path.read_text()) == expected


def test_profiles_repeat_the_default_settings_they_do_not_change() -> None:
    """`small` and `paper` differ from `default` only where they say so; they repeat the rest instead of
    merging it with a YAML anchor (`<<: *default`), which `dvc exp run -S` cannot edit (test above)."""
    text = (ROOT / "params.yaml").read_text()
    aliases = [e for e in yaml.parse(text) if isinstance(e, yaml.AliasEvent)]
    assert not aliases, "params.yaml uses YAML aliases (*name): DVC's -S loses edits to what they share"
    paper = {"data", "train", "ablations", "reparameterize", "evaluate", "speed"}
    own = {"small": {"ablations"}, "paper": paper}
    for profile, changed in own.items():
        assert set(PARAMS[profile]) == set(PARAMS["default"]), profile
        for section in set(PARAMS["default"]) - changed:
            assert PARAMS[profile][section] == PARAMS["default"][section], (profile, section)
    small, default = PARAMS["small"]["ablations"]["common"], PARAMS["default"]["ablations"]["common"]
    assert small["hyp_overrides"] == default["hyp_overrides"] and small["extra"] == default["extra"]
