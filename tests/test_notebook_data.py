"""The notebooks' own data sets (01-data's generated set, 02-train's and 04-evaluate's smoke-test set) are
written only where nothing of the user's is: a mistyped `-p data` or `-p root` once deleted the folder it
named (its parent for `data`) and generated a set in its place."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from yolov7lib.data.synth import GENERATED_HEADER
from yolov7lib.pipeline import generate_data_set, is_generated_set, smoke_data

ROOT = Path(__file__).resolve().parents[1]


def _users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mycoco"
    folder.mkdir()
    (folder / "coco.yaml").write_text("train: images/train2017\nval: images/val2017\nnc: 80\n")
    (folder / "precious.txt").write_text("not a generated file\n")
    return folder


def test_smoke_data_never_deletes_a_folder_that_holds_files(tmp_path: Path) -> None:
    folder = _users_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"coco\.yml not found.*Check the path"):
        smoke_data(folder / "coco.yml", "smoke")  # the user meant coco.yaml
    assert sorted(p.name for p in folder.iterdir()) == ["coco.yaml", "precious.txt"]
    with pytest.raises(FileNotFoundError, match="not found"):
        smoke_data(tmp_path / "new" / "coco.yaml", "smoke")  # synthesize writes data.yaml only
    assert not (tmp_path / "new").exists()


def test_smoke_data_generates_in_a_new_folder_and_only_for_the_smoke_profile(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data.yaml"
    assert smoke_data(data, "default") == data and not data.parent.exists()  # the data stage's job
    assert smoke_data(data, "smoke") == data and is_generated_set(data.parent)
    before = data.stat().st_mtime_ns
    assert smoke_data(data, "smoke") == data and data.stat().st_mtime_ns == before  # present: kept


def test_generate_data_set_replaces_only_a_generated_set(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    args = dict(n_train=2, n_val=1, img_size=64, seed=0)
    data_yaml = generate_data_set(root, root / "data.yaml", **args)
    assert data_yaml.read_text().startswith(GENERATED_HEADER) and is_generated_set(root)
    (root / "images" / "train" / "000000.jpg").unlink()
    generate_data_set(root, root / "data.yaml", **args)  # an earlier generated set is rebuilt
    assert (root / "images" / "train" / "000000.jpg").is_file()

    folder = _users_folder(tmp_path)
    with pytest.raises(FileExistsError, match="nothing was deleted"):
        generate_data_set(folder, folder / "data.yaml", **args)
    assert sorted(p.name for p in folder.iterdir()) == ["coco.yaml", "precious.txt"]
    with pytest.raises(ValueError, match=r"-p yaml .*new.*data\.yaml"):
        generate_data_set(tmp_path / "new", root / "data.yaml", **args)  # root changed, yaml not
    assert not (tmp_path / "new").exists()


def _papermill(notebook: str, tmp_path: Path, params: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / notebook), str(tmp_path / "out.ipynb"),
           "-y", json.dumps(params)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", ["02-train.ipynb", "04-evaluate.ipynb"])
def test_a_mistyped_data_path_leaves_its_folder_alone(notebook: str, tmp_path: Path) -> None:
    """`papermill ... -p data mycoco/coco.yml` (for coco.yaml) used to delete mycoco and generate a set."""
    folder = _users_folder(tmp_path)
    where = {
        "project": str(tmp_path / "runs"),
        "metrics_out": str(tmp_path / "m.json"),
        "json_out": str(tmp_path / "m.json"),
        "objectness_out": "",
        "figure_out": str(tmp_path / "f.png"),
    }
    params = {k: v for k, v in where.items() if k in _parameters(notebook)}
    done = _papermill(notebook, tmp_path, {"data": str(folder / "coco.yml"), **params})
    assert done.returncode != 0
    assert sorted(p.name for p in folder.iterdir()) == ["coco.yaml", "precious.txt"]
    assert "coco.yml not found" in done.stderr


@pytest.mark.slow
def test_the_data_notebook_leaves_a_users_folder_alone(tmp_path: Path) -> None:
    folder = _users_folder(tmp_path)
    where = {"figure_out": str(tmp_path / "f.png"), "metrics_out": str(tmp_path / "m.json"),
             "manifest_out": str(tmp_path / "manifest.json")}  # fmt: skip
    done = _papermill(
        "01-data.ipynb", tmp_path, {"root": str(folder), "yaml": str(folder / "data.yaml"), **where}
    )
    assert done.returncode != 0 and "nothing was deleted" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["coco.yaml", "precious.txt"]
    done = _papermill("01-data.ipynb", tmp_path, {"root": str(tmp_path / "mine"), **where})  # yaml forgotten
    assert done.returncode != 0 and f"-p yaml {tmp_path / 'mine' / 'data.yaml'}" in done.stderr


def _parameters(notebook: str) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(ROOT / "notebooks" / notebook)))
