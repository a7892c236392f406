"""What `yolov7 pipeline` asks papermill to run, the `yolov7` command's argument types and exit codes, and
the hyperparameter file checks.

papermill itself is replaced by a recorder (its import alone takes seconds): these tests check what the
pipeline asks it to do, not how notebooks execute (tests/test_pipeline.py's slow test does that).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import sys
import types
from pathlib import Path

import pytest
import yaml

from yolov7lib import pipeline
from yolov7lib.cli import main, positive_int, unit_interval
from yolov7lib.configs import load_hyp

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
PROFILES = [k for k, v in PARAMS.items() if isinstance(v, dict) and "data" in v]


@pytest.fixture
def papermill_calls(monkeypatch) -> list[dict]:
    """Record papermill.execute_notebook's calls instead of running notebooks."""
    calls: list[dict] = []

    def execute_notebook(input_path, output_path, **kwargs):
        calls.append({"input": input_path, "output": output_path, **kwargs})

    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(execute_notebook=execute_notebook))
    return calls


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A working folder with the project's params.yaml, as `yolov7 pipeline` runs in the repository root."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _two_profiles(folder: Path) -> Path:
    """A params.yaml whose file choice is `a`, with a second profile `b` that differs from it."""
    path = folder / "two.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "profile": "a",
                "models": [],
                "ablation_variants": [],
                "a": {"data": {"yaml": "a.yaml"}, "tour": {"img": 64}},
                "b": {"data": {"yaml": "b.yaml"}, "tour": {"img": 128}},
            }
        )
    )
    return path


def _declared_parameters(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}


# -- yolov7lib.pipeline ---------------------------------------------------------------------------------


def test_the_profile_argument_overrides_the_files_choice(tmp_path: Path, papermill_calls) -> None:
    path = _two_profiles(tmp_path)
    assert pipeline.load_params(path)[0] == "a"
    name, settings = pipeline.load_params(path, "b")
    assert name == "b" and settings["tour"] == {"img": 128}
    assert pipeline.run_stage("tour", params=str(path), profile="b") == 0
    assert papermill_calls[-1]["parameters"] == {"profile": "b", "img": 128}


def test_split_item_splits_at_the_last_seed_marker_and_needs_a_numeric_seed() -> None:
    assert pipeline.split_item("t9-small-s2") == ("t9-small", 2)  # a variant name may contain "-s"
    assert pipeline.split_item("t3-base-s12") == ("t3-base", 12)
    for bad in ("t6-base-sx", "t6-base-s", "t6-base-s-1"):
        with pytest.raises(KeyError, match="VARIANT-sSEED"):
            pipeline.split_item(bad)


def test_ablation_run_takes_the_scale_from_the_profile_and_the_recipe_from_the_variant() -> None:
    """Module docstring and ablation_run: the profile's common settings set the scale and may add
    hyperparameter overrides, under the variant's own; the item's seed is the run's seed."""
    settings = {
        "_catalogue": {
            "t9-small": {
                "model": "yolov7-e6",
                "hyp": "p6",
                "img": 1280,
                "hyp_overrides": {"aux_assign": "lead_guided", "lr0": 0.5},
                "rows": [[6, "lead-guided"]],
            }
        },
        "ablations": {"common": {"epochs": 2, "img": 192, "hyp_overrides": {"lr0": 0.001, "nbs": 16}}},
    }
    assert pipeline.ablation_run("t9-small-s3", settings) == {
        "model": "yolov7-e6",
        "hyp": "p6",
        "img": 192,
        "epochs": 2,
        "hyp_overrides": {"lr0": 0.5, "nbs": 16, "aux_assign": "lead_guided"},
        "seed": 3,
    }


@pytest.mark.parametrize("profile", PROFILES)
def test_every_parameter_the_pipeline_passes_is_declared_by_its_notebook(profile: str) -> None:
    """papermill warns about (and the notebook ignores) a parameter its parameters cell lacks."""
    name, settings = pipeline.load_params(ROOT / "params.yaml", profile)
    for stage, spec in pipeline.STAGES.items():
        items = [None] if spec.items is None else settings["_lists"][spec.items]
        declared = _declared_parameters(ROOT / "notebooks" / spec.notebook)
        for item in items:
            if spec.items and not pipeline.is_active(stage, item, settings):
                continue
            passed = pipeline.notebook_parameters(stage, item, name, settings)
            assert set(passed) <= declared, (profile, stage, item, set(passed) - declared)


def test_training_stages_write_their_run_where_dvc_yaml_and_the_skip_markers_say(repo: Path) -> None:
    name, settings = pipeline.load_params("params.yaml", "default")
    model = next(iter(settings["train"]["runs"]))
    train = pipeline.notebook_parameters("train", model, name, settings)
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]["outs"]
    assert f"{train['project']}/{train['name']}" in [o.replace("${item}", model) for o in declared]
    assert train["objectness_out"] == ""  # only ablation runs keep objectness maps
    assert train["data"] == settings["data"]["yaml"]
    for k, v in settings["train"]["runs"][model].items():
        assert train[k] == v, k

    item = f"{settings['ablations']['variants'][0]}-s{settings['ablations']['seeds'][-1]}"
    ablation = pipeline.notebook_parameters("ablation", item, name, settings)
    assert (ablation["project"], ablation["name"]) == ("runs/ablations", item)
    # an item the profile skips leaves its marker in the folder its run would have had
    skipped = next(i for i in PARAMS["ablation_variants"] if not pipeline.is_active("ablation", i, settings))
    pipeline.write_skip("ablation", skipped, name)
    assert json.loads((repo / ablation["project"] / skipped / "SKIPPED.json").read_text())["skipped"]


def test_other_stages_get_their_profile_block(repo: Path) -> None:
    name, settings = pipeline.load_params("params.yaml", "default")
    for stage in ("evaluate", "speed", "report"):
        params = pipeline.notebook_parameters(stage, None, name, settings)
        assert params == {"profile": "default", **PARAMS["default"][stage]}, stage


def test_a_seed_the_profile_does_not_run_gets_a_skip_marker(repo: Path, papermill_calls) -> None:
    _, paper = pipeline.load_params("params.yaml", "paper")
    assert paper["ablations"]["seeds"] == [0] and "t6-base" in paper["ablations"]["variants"]
    assert pipeline.is_active("ablation", "t6-base-s0", paper)
    assert not pipeline.is_active("ablation", "t6-base-s1", paper)
    assert pipeline.run_stage("ablation", "t6-base-s1", profile="paper") == 0
    assert papermill_calls == []
    marker = json.loads((repo / "reports/metrics/ablations/t6-base-s1.json").read_text())
    assert marker["skipped"] and marker["profile"] == "paper"


def test_an_item_not_in_the_lists_is_refused_and_writes_nothing(repo: Path, papermill_calls) -> None:
    with pytest.raises(KeyError, match="`models`"):
        pipeline.run_stage("train", "yolov7-typo", profile="default")
    with pytest.raises(KeyError, match="`ablation_variants`"):
        pipeline.run_stage("ablation", "t6-base-s7", profile="default")
    assert papermill_calls == [] and sorted(p.name for p in repo.iterdir()) == ["params.yaml"]


def test_an_item_on_a_stage_without_items_and_a_missing_item_are_refused(repo: Path, papermill_calls) -> None:
    with pytest.raises(KeyError, match="evaluate takes no item"):
        pipeline.run_stage("evaluate", "t6-base-s0", profile="default")
    with pytest.raises(KeyError, match=r"train needs an item from params\.yaml's `models`"):
        pipeline.run_stage("train", profile="default")
    assert papermill_calls == [] and sorted(p.name for p in repo.iterdir()) == ["params.yaml"]


def _link_notebooks(folder: Path) -> None:
    """The project's notebooks in `folder`, as in a checkout (a stage is refused where its notebook is
    missing, before papermill runs)."""
    (folder / "notebooks").symlink_to(ROOT / "notebooks", target_is_directory=True)


def test_run_stage_executes_the_stage_notebook_into_runs_notebooks(repo: Path, papermill_calls) -> None:
    _link_notebooks(repo)
    name, settings = pipeline.load_params("params.yaml", "default")
    model = next(iter(settings["train"]["runs"]))
    assert pipeline.run_stage("train", model, profile="default") == 0
    assert pipeline.run_stage("evaluate", profile="default") == 0
    train, evaluate = papermill_calls
    assert train["input"] == str(Path("notebooks/02-train.ipynb"))
    assert train["output"] == str(Path(f"runs/notebooks/02-train-{model}.ipynb"))  # not over the input
    assert train["parameters"] == pipeline.notebook_parameters("train", model, name, settings)
    assert evaluate["output"] == str(Path("runs/notebooks/04-evaluate.ipynb"))
    assert evaluate["parameters"] == pipeline.notebook_parameters("evaluate", None, name, settings)
    assert (repo / "runs/notebooks").is_dir()


def test_chdir_to_repo_moves_to_the_folder_with_the_marker(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    inner = tmp_path / "notebooks" / "deeper"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert pipeline.chdir_to_repo() == tmp_path.resolve()
    assert Path.cwd() == tmp_path.resolve()
    monkeypatch.chdir(inner)
    assert pipeline.chdir_to_repo("no-such-marker") == inner.resolve() and Path.cwd() == inner.resolve()


# -- yolov7lib.cli --------------------------------------------------------------------------------------


def test_argument_types_accept_their_bounds_and_refuse_what_is_outside() -> None:
    assert positive_int("1") == 1 and positive_int("640") == 640
    assert unit_interval("0") == 0.0 and unit_interval("1") == 1.0 and unit_interval("0.25") == 0.25
    for text in ("0", "-3", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(text)
    for text in ("1.5", "1.0001", "-0.01", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            unit_interval(text)


def test_pipeline_command_passes_the_profile_and_reports_errors_in_one_line(
    tmp_path: Path, monkeypatch, papermill_calls, capsys
) -> None:
    path = _two_profiles(tmp_path)
    _link_notebooks(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["pipeline", "tour", "--params", str(path), "--profile", "b"]) == 0
    assert papermill_calls[-1]["parameters"] == {"profile": "b", "img": 128}

    capsys.readouterr()
    assert main(["pipeline", "nope", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yolov7 pipeline: error: unknown stage 'nope'")  # no KeyError quotes around it
    assert main(["pipeline", "tour", "--params", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yolov7 pipeline: error: ") and "missing.yaml not found" in err
    assert "Traceback" not in err


def test_data_check_restores_the_data_loggers_level_after_an_error(tmp_path: Path, capsys) -> None:
    scan_log = logging.getLogger("yolov7lib.data")
    before = scan_log.level
    scan_log.setLevel(logging.INFO)
    try:
        assert main(["data", "check", str(tmp_path / "missing.yaml")]) == 1
        assert scan_log.level == logging.INFO
    finally:
        scan_log.setLevel(before)
    assert "yolov7 data check: error:" in capsys.readouterr().err


def test_bare_resume_looks_for_the_latest_run_under_the_given_project(tmp_path: Path, monkeypatch) -> None:
    from yolov7lib.engine import trainer

    project = tmp_path / "mine"
    for run in ("old", "new"):
        (project / run / "weights").mkdir(parents=True)
        (project / run / "weights" / "last.pt").write_bytes(b"")
    os.utime(project / "old" / "weights" / "last.pt", (1, 1))
    seen: list[dict] = []
    monkeypatch.setattr(trainer, "train", lambda **options: seen.append(options))
    monkeypatch.chdir(tmp_path)  # no runs/train here
    assert main(["train", "--resume", "--project", str(project)]) == 0
    assert seen == [{"resume": str(project / "new"), "project": str(project)}]


@pytest.fixture
def export_calls(monkeypatch) -> list[Path]:
    """Record the output path `yolov7 export` would write, without building or exporting a model."""
    import yolov7lib.deploy
    import yolov7lib.engine.weights

    paths: list[Path] = []

    def export_and_verify(model, out, *args):
        paths.append(Path(out))
        return {"path": str(out), "size_mb": 0.0, "checks": []}

    monkeypatch.setattr(yolov7lib.engine.weights, "load_model", lambda weights, model: None)
    monkeypatch.setattr(yolov7lib.deploy, "export_and_verify", export_and_verify)
    return paths


def test_export_writes_exactly_the_out_path_or_one_beside_the_weights(
    tmp_path: Path, export_calls, capsys
) -> None:
    weights = tmp_path / "best.pt"
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "mine.onnx")]) == 0
    assert main(["export", "--weights", str(weights)]) == 0
    assert main(["export", "--weights", str(weights), "--end2end"]) == 0
    assert export_calls == [tmp_path / "mine.onnx", tmp_path / "best.onnx", tmp_path / "best-end2end.onnx"]


def test_export_refuses_an_existing_out_file_and_leaves_it(tmp_path: Path, export_calls, capsys) -> None:
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"user data")
    assert main(["export", "--model", "yolov7-tiny", "--out", str(mine)]) == 1
    assert "exists" in capsys.readouterr().err and mine.read_bytes() == b"user data"
    assert export_calls == []


def test_a_device_this_process_cannot_use_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    """select_device's RuntimeError (no CUDA here, or two GPUs outside torchrun) is a user error."""
    image = tmp_path / "a.jpg"
    image.write_bytes(b"not read: the device is checked first")
    args = ["--model", "yolov7-tiny", "--source", str(image), "--project", str(tmp_path / "runs")]
    assert main(["detect", *args, "--device", "0,1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("yolov7 detect: error: --device 0,1 ") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_train_on_a_device_this_process_cannot_use_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    """Before: `yolov7 train --device 0` on a machine without CUDA ended in a traceback (val and detect
    already gave the one-line error); the device is checked before the data set is read."""
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(tmp_path / "d.yaml"), "--device", "0,1", "--project", str(runs)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("yolov7 train: error: --device 0,1 ") and "Traceback" not in err
    assert not runs.exists()


def test_no_command_prints_the_usage_and_succeeds(capsys) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("usage: yolov7")


# -- yolov7lib.configs ----------------------------------------------------------------------------------


def _reference() -> dict:
    return yaml.safe_load((ROOT / "yolov7lib" / "configs" / "hyp.scratch.p5.yaml").read_text())


def test_a_file_missing_a_single_reference_key_is_refused_by_name(tmp_path: Path) -> None:
    hyp = _reference()
    del hyp["fl_gamma"]
    f = tmp_path / "hyp.yaml"
    f.write_text(yaml.safe_dump(hyp))
    with pytest.raises(ValueError, match=r"missing hyperparameter\(s\) fl_gamma;"):
        load_hyp(f)


@pytest.mark.parametrize(("extra", "hint"), [({"label_smothing": 0.1}, ""), ({"anchors": 3}, "cfg YAML")])
def test_a_key_the_kit_does_not_read_is_refused_by_name(tmp_path: Path, extra: dict, hint: str) -> None:
    """Before: a misspelt kit key (`label_smothing` for `label_smoothing`, which README says to set for the
    reference's --label-smoothing) loaded without a word and trained with the default; so did the
    reference's `anchors` key, which the kit never reads."""
    f = tmp_path / "hyp.yaml"
    f.write_text(yaml.safe_dump({**_reference(), **extra}))
    (key,) = extra
    with pytest.raises(ValueError, match=rf"unknown hyperparameter\(s\) {key}\b.*{hint}"):
        load_hyp(f)
    f.write_text(yaml.safe_dump({**_reference(), "label_smoothing": 0.1}))  # the right spelling loads
    assert load_hyp(f)["label_smoothing"] == 0.1


def test_a_kit_key_that_is_not_a_number_is_refused_by_name(tmp_path: Path) -> None:
    f = tmp_path / "hyp.yaml"
    f.write_text(yaml.safe_dump({**_reference(), "aux_weight": "high"}))
    with pytest.raises(ValueError, match="hyperparameter aux_weight must be a number, got 'high'"):
        load_hyp(f)


def test_a_users_values_win_over_the_packaged_defaults(tmp_path: Path) -> None:
    """hyp.defaults.yaml only fills keys the chosen source does not set."""
    defaults = yaml.safe_load((ROOT / "yolov7lib" / "configs" / "hyp.defaults.yaml").read_text())
    assert (defaults["nbs"], defaults["optimizer"], defaults["aux_weight"]) == (64, "sgd", 0.25)
    cpu = load_hyp("cpu")
    assert (cpu["nbs"], cpu["optimizer"], cpu["warmup_min_iters"]) == (8, "adam", 0)  # hyp.cpu.yaml's
    f = tmp_path / "hyp.yaml"
    f.write_text(yaml.safe_dump({**_reference(), "nbs": 32, "aux_weight": 0.5}))
    hyp = load_hyp(f)
    assert (hyp["nbs"], hyp["aux_weight"], hyp["optimizer"]) == (32, 0.5, "sgd")
    assert load_hyp({"nbs": 4})["nbs"] == 4


def test_profile_names_given_as_paths_load_the_same_files() -> None:
    for name in ("p5", "p6", "tiny", "cpu"):
        assert load_hyp(Path(name)) == load_hyp(name), name


def test_yaml_errors_name_the_line_as_an_editor_counts_it(tmp_path: Path) -> None:
    f = tmp_path / "hyp.yaml"
    f.write_text("lr0: 0.01\nlrf: 0.1\nmomentum: : 0.9\n")
    with pytest.raises(ValueError, match="at line 3\\)"):
        load_hyp(f)


def test_an_empty_file_is_refused_for_its_missing_keys(tmp_path: Path) -> None:
    f = tmp_path / "hyp.yaml"
    f.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match=r"missing hyperparameter\(s\) lr0, lrf"):
        load_hyp(f)
