"""Inputs of the figures from other stages: measured speed/AP points, checkpoints for Figure 8."""

from __future__ import annotations

import json

import pytest
import torch

from yolov7lib.engine.checkpoint import save_checkpoint
from yolov7lib.models import create_model, model_spec
from yolov7lib.report.figure_sources import (
    figure8_inputs,
    figure8_scale,
    load_trained_model,
    measured_speed_points,
    objectness_outputs,
    sample_image,
)


def write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def speed_rows(model: str) -> list[dict]:
    rows = []
    for backend, base in (("eager", 250.0), ("fused", 200.0)):
        for batch in (1, 8, 32):
            ms = base / (1 + batch / 16)
            rows.append({"model": model, "backend": backend, "batch": batch, "img": 640,
                         "ms_per_image": ms, "images_per_s": 1000.0 / ms})  # fmt: skip
    return rows


def test_missing_stages_give_no_points_and_say_why(tmp_path) -> None:
    points, notes = measured_speed_points(tmp_path / "speed.json", None)
    assert all(p == [] for p in points.values()) and set(points) == {1, 9, 10, 11}
    assert any("speed" in n and "not found" in n for n in notes) and any("evaluation" in n for n in notes)


@pytest.mark.parametrize("ap", [0.123, 12.3])  # a fraction or a percentage
def test_points_pair_each_backends_speed_with_the_evaluated_ap(tmp_path, ap: float) -> None:
    rows = speed_rows("yolov7-tiny") + speed_rows("yolov7")
    speed = write(tmp_path / "speed.json", {"device": "2-core CPU", "peak_gflops": 117.0, "rows": rows})
    evaluation = write(
        tmp_path / "eval.json", {"model": "yolov7-tiny", "scale": "generated data", "coco": {"ap": ap}}
    )
    points, notes = measured_speed_points(speed, evaluation)
    assert notes == []
    for n in (1, 9, 10):
        got = {(p.label, round(p.x, 9), round(p.y, 9)) for p in points[n]}
        want = {(f"yolov7-tiny ({b})", round(1000.0 / (base / (1 + 1 / 16)), 9), 12.3)
                for b, base in (("eager", 250.0), ("fused", 200.0))}  # fmt: skip
        assert got == want
    assert sorted((p.label, p.x) for p in points[11]) == sorted(
        (f"yolov7-tiny ({b}), batch 32", base / 3) for b, base in (("eager", 250.0), ("fused", 200.0))
    )
    assert all("2-core CPU" in p.scale and "generated data" in p.scale for p in points[11])


def test_unmeasured_model_and_bad_files_are_reported(tmp_path) -> None:
    speed = write(
        tmp_path / "speed.json", {"device": "cpu", "peak_gflops": 1.0, "rows": speed_rows("yolov7")}
    )
    evaluation = write(tmp_path / "eval.json", {"model": "yolov7-tiny", "scale": "s", "coco": {"ap": 0.2}})
    points, notes = measured_speed_points(speed, evaluation)
    assert points[1] == [] and notes == ["speed.json has no row for the evaluated model 'yolov7-tiny'"]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        measured_speed_points(tmp_path / "bad.json", evaluation)
    with pytest.raises(ValueError, match="missing key"):
        measured_speed_points(write(tmp_path / "s2.json", {"rows": []}), evaluation)


def test_checkpoint_round_trip_gives_the_same_model(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model({**model_spec("yolov7-w6"), "width_multiple": 0.125}, nc=2).eval()
    path = save_checkpoint({"model_cfg": model.cfg, "ema": {"model": model.state_dict()}}, tmp_path / "w.pt")
    loaded = load_trained_model(path).eval()
    x = torch.rand(1, 3, 64, 64)
    outs = objectness_outputs([("a", loaded)], x)["a"]
    assert len(outs) == 2 * model.head.nl
    with torch.no_grad():
        _, lead = model(x)  # eval mode: the raw lead maps, computed independently
    for a, b in zip(outs[: model.head.nl], lead, strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="not a yolov7lib checkpoint"):
        load_trained_model(save_checkpoint({"model": {}}, tmp_path / "x.pt"))


def test_figure8_draws_saved_maps_over_the_image_they_were_computed_on(tmp_path) -> None:
    """The ablation runs save their maps of data seed 0's image (notebook 02); before, the figures
    notebook drew them over the image of its own `seed`, another image once `figures.seed` was changed."""
    maps = [torch.rand(1, 3, 8, 8, 6), torch.rand(1, 3, 8, 8, 6)]
    path = tmp_path / "run.objectness.pt"
    torch.save({"img": 64, "nl": 1, "outputs": maps, "name": "m", "scale": "s"}, path)
    seed0, seed1 = sample_image(64, 0), sample_image(64, 1)
    assert not torch.equal(seed0, seed1)  # the seed does pick another image
    outputs, image, nl = figure8_inputs([("run", path)], [], 64, seed=1)
    assert torch.equal(image, seed0) and nl == 1
    assert all(torch.equal(a, b) for a, b in zip(outputs["run"], maps, strict=True))
    with pytest.raises(ValueError, match="another image size than 96"):
        figure8_inputs([("run", path)], [], 96, seed=1)
    _, image, _ = figure8_inputs([], [], 64, seed=1)  # the random model: the image of its own seed
    assert torch.equal(image, seed1)


def test_figure8_scale_names_the_source_figure8_inputs_draws(tmp_path) -> None:
    """Figure 8's label: the saved maps' model, runs and training scale; else the checkpoints; else the
    random model - the same order in which `figure8_inputs` picks what it draws."""
    maps = [torch.rand(1, 3, 8, 8, 6), torch.rand(1, 3, 8, 8, 6)]
    paths = []
    for name in ("t6-a-s0", "t6-b-s0"):
        paths.append((name, tmp_path / f"{name}.objectness.pt"))
        record = {
            "img": 64,
            "nl": 1,
            "outputs": maps,
            "name": name,
            "model": "yolov7-e6",
            "scale": "proxy, 2 epochs",
        }
        torch.save(record, paths[-1][1])
    assert figure8_scale(paths, [("c", "ck.pt")]) == "trained yolov7-e6 (t6-a-s0, t6-b-s0): proxy, 2 epochs"
    assert figure8_scale([], [("c", "ck.pt")]) == "trained checkpoints ck.pt"
    assert "untrained" in figure8_scale([], [])
    skipped = tmp_path / "skipped.objectness.pt"
    torch.save({"skipped": True}, skipped)
    assert figure8_scale([("s", skipped)], []) == figure8_scale([], [])  # as figure8_inputs: not drawn
