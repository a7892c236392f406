"""`yolov7 detect` finds known objects with a constructed model, maps boxes back to the original pixels,
writes txt / json / annotated images and videos, and skips bad inputs without touching anything.

The constructed model (chosen over a briefly trained one: its answer is known exactly, and it takes no
training time): one 32 x 32 stride-32 convolution averaging each RGB channel over a grid cell, then a
Detect head with one 32 x 32 px anchor whose objectness logit is 40 (R + G) - 20 and whose class
logits are 20 (R - G) and 20 (G - R), box offsets all zero. A cell filled with pure red therefore fires
class 0 with the cell itself as its box, pure green class 1, and nothing else fires. Drawing such
squares where letterboxed grid cells fall in a larger, non-square original image tests the colour order
(BGR files, RGB model), letterbox, NMS and the scale-back to original pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from inference_models import checkpoint_of

from yolov7lib.cli import main
from yolov7lib.data.augment import letterbox
from yolov7lib.engine.checkpoint import save_checkpoint
from yolov7lib.engine.detect import DetectOptions, postprocess, preprocess, run_detect
from yolov7lib.models import create_model

FIRE_CFG = {
    "nc": 2,
    "depth_multiple": 1.0,
    "width_multiple": 1.0,
    "anchors": [[32, 32]],
    "backbone": [[-1, 1, "nn.Conv2d", [8, 32, 32, 0]]],
    "head": [[[-1], 1, "Detect", ["nc", "anchors"]]],
}
H0, W0, IMG = 300, 450, 224  # letterboxed to 160 x 224: ratio 224 / 450, 5 px padding on top, 6 below
RATIO, PAD_H = IMG / W0, 5.0


def _cell_in_original(row: int, col: int) -> list[float]:
    """The box of letterboxed grid cell (row, col), stride 32, in original pixels."""
    x1, y1, x2, y2 = col * 32, row * 32, (col + 1) * 32, (row + 1) * 32
    return [x1 / RATIO, (y1 - PAD_H) / RATIO, x2 / RATIO, (y2 - PAD_H) / RATIO]


RED_BOX, GREEN_BOX = _cell_in_original(2, 3), _cell_in_original(1, 5)


@torch.no_grad()
def _fire_model() -> torch.nn.Module:
    model = create_model(FIRE_CFG)
    mean = model.model[0]
    mean.weight.zero_()
    mean.bias.zero_()
    for c in range(3):
        mean.weight[c, c] = 1.0 / (32 * 32)  # channel c = mean of input channel c (R, G, B)
    head = model.head.m[0]  # outputs: tx, ty, tw, th, objectness, class 0, class 1
    head.weight.zero_()
    head.bias.zero_()
    head.weight[4, 0], head.weight[4, 1], head.bias[4] = 40.0, 40.0, -20.0
    head.weight[5, 0], head.weight[5, 1] = 20.0, -20.0
    head.weight[6, 0], head.weight[6, 1] = -20.0, 20.0
    return model.eval()


def _scene(seed: int = 0) -> np.ndarray:
    """BGR image: dark noise, a red square on RED_BOX and a green one on GREEN_BOX (rounded pixels)."""
    img = np.random.default_rng(seed).integers(0, 40, (H0, W0, 3), dtype=np.uint8)
    for box, bgr in ((RED_BOX, (0, 0, 255)), (GREEN_BOX, (0, 255, 0))):
        x1, y1, x2, y2 = (round(v) for v in box)
        img[y1:y2, x1:x2] = bgr
    return img


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fire") / "fire.pt"
    return save_checkpoint(checkpoint_of(_fire_model(), ["red", "green"]), path)


def _run(capsys, *args: str) -> tuple[int, dict]:
    code = main(["detect", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def test_ctrl_c_in_detect_keeps_the_finished_inputs_json_and_says_so(
    weights, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Ctrl-C on the second of three images: predictions.json holds the first one's detections and the
    command ends with a summary and status 130 (before: a KeyboardInterrupt traceback, status 1, no json)."""
    from yolov7lib.engine import detect as detect_module

    src = tmp_path / "inputs"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"scene{i}.png"), _scene())
    calls, real = [], detect_module.detect_frame

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(detect_module, "detect_frame", interrupted_on_the_second)
    project = tmp_path / "runs"
    code = main(["detect", "--weights", str(weights), "--source", str(src), "--img", str(IMG),
                 "--project", str(project), "--save-json"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "1 images" in err and "Traceback" not in err
    records = json.loads((project / "exp" / "predictions.json").read_text())
    assert {Path(r["file"]).name for r in records} == {"scene0.png"} and len(records) == 2


def test_detect_finds_the_known_objects_and_writes_everything(weights, tmp_path: Path, capsys) -> None:
    src = tmp_path / "inputs"
    src.mkdir()
    cv2.imwrite(str(src / "scene.png"), _scene())
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "notes.txt").write_text("not an image")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    project = tmp_path / "runs"
    code, report = _run(capsys, "--weights", str(weights), "--source", str(src), "--img", str(IMG),
                        "--project", str(project), "--save-txt", "--save-json")  # fmt: skip
    assert code == 0
    assert report["images"] == 1 and report["detections"] == 2
    assert sorted(Path(p).name for p, _ in report["skipped"]) == ["corrupt.jpg", "notes.txt"]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched

    run = project / "exp"
    records = json.loads((run / "predictions.json").read_text())
    found = {r["name"]: r for r in records}
    assert set(found) == {"red", "green"}
    assert found["red"]["class"] == 0 and found["green"]["class"] == 1
    np.testing.assert_allclose(found["red"]["bbox_xyxy"], RED_BOX, atol=1.0)
    np.testing.assert_allclose(found["green"]["bbox_xyxy"], GREEN_BOX, atol=1.0)
    assert min(r["score"] for r in records) > 0.9

    rows = np.loadtxt(run / "labels" / "scene.txt", ndmin=2)
    red = rows[rows[:, 0] == 0][0]
    x1, y1, x2, y2 = RED_BOX
    expected = [(x1 + x2) / 2 / W0, (y1 + y2) / 2 / H0, (x2 - x1) / W0, (y2 - y1) / H0]
    np.testing.assert_allclose(red[1:], expected, atol=1.0 / W0)
    drawn = cv2.imread(str(run / "scene.png"))
    assert drawn.shape == (H0, W0, 3) and not np.array_equal(drawn, cv2.imread(str(src / "scene.png")))

    # a second run goes to a new folder; the first one's files stay as they were
    first = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, report = _run(capsys, "--weights", str(weights), "--source", str(src / "*.png"), "--img", str(IMG),
                        "--project", str(project), "--classes", "1", "--nosave")  # fmt: skip
    assert code == 0 and report["run_dir"] == str(project / "exp2") and report["per_class"] == {"green": 1}
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == first
    # a source that holds the output folder: earlier results are skipped, not detected again
    code, report = _run(capsys, "--weights", str(weights), "--source", str(tmp_path), "--img", str(IMG),
                        "--project", str(project), "--nosave")  # fmt: skip
    assert code == 0 and report["images"] == 1
    inside = [Path(p) for p, why in report["skipped"] if why == "inside the output folder"]
    assert inside == [run / "scene.png"]


def test_an_image_format_opencv_cannot_write_is_annotated_as_jpg(weights, tmp_path: Path, capsys) -> None:
    """`.mpo` (a JPEG with extra frames) is read but OpenCV has no writer for it: the copy is a `.jpg`."""
    src = tmp_path / "inputs"
    src.mkdir()
    (src / "scene.mpo").write_bytes(cv2.imencode(".jpg", _scene())[1].tobytes())
    (tmp_path / "runs" / "exp").mkdir(parents=True)
    (tmp_path / "runs" / "exp" / "scene.jpg").write_bytes(b"a user's file")
    code, report = _run(capsys, "--weights", str(weights), "--source", str(src), "--img", str(IMG),
                        "--project", str(tmp_path / "runs"), "--exist-ok")  # fmt: skip
    assert code == 0 and report["images"] == 1 and report["skipped"] == []
    run = tmp_path / "runs" / "exp"
    assert (run / "scene.jpg").read_bytes() == b"a user's file"  # taken: the copy goes beside it
    assert cv2.imread(str(run / "scene_2.jpg")).shape == (H0, W0, 3)


def test_detect_on_a_video_annotates_every_frame(weights, tmp_path: Path, capsys) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (W0, H0))
    for i in range(3):
        writer.write(_scene(seed=i))
    writer.release()
    (tmp_path / "broken.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage")
    code, report = _run(capsys, "--weights", str(weights), "--source", str(tmp_path), "--img", str(IMG),
                        "--project", str(tmp_path / "runs"), "--save-txt", "--save-json")  # fmt: skip
    assert code == 0
    assert report["videos"] == 1 and report["frames"] == 3 and report["detections"] == 6
    assert [Path(p).name for p, _ in report["skipped"]] == ["broken.avi"]
    run = tmp_path / "runs" / "exp"
    # frames are numbered from 1, as the reference's detect.py names them (its video reader counts up
    # before returning a frame): a migrated script reading clip_1.txt reads the first frame
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["clip_1.txt", "clip_2.txt", "clip_3.txt"]
    records = json.loads(Path(report["predictions_json"]).read_text())
    assert sorted({r["frame"] for r in records}) == [1, 2, 3]  # the json's numbers are the files'
    cap = cv2.VideoCapture(str(run / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_letterbox_then_scale_back_returns_boxes_to_the_original_within_1px() -> None:
    """Random image shapes and boxes: a box drawn in the original is found in the letterboxed input
    where the letterbox geometry puts it (within 1 px), and `postprocess` maps it back exactly."""
    rng = np.random.default_rng(0)
    for _ in range(25):
        h0, w0 = (int(v) for v in rng.integers(40, 700, 2))
        img_size = int(rng.choice([64, 128, 160, 320, 640]))
        x1, x2 = np.sort(rng.uniform(0, w0, 2))
        y1, y2 = np.sort(rng.uniform(0, h0, 2))
        if min(x2 - x1, y2 - y1) < 8:
            continue
        img = np.zeros((h0, w0, 3), np.uint8)
        img[round(y1) : round(y2), round(x1) : round(x2)] = 255
        x, ((rh, rw), (pw, ph)) = preprocess(img, img_size, 32)
        h, w = x.shape[2:]
        assert h % 32 == 0 and w % 32 == 0 and max(h, w) <= max(img_size, 32)
        forward = np.array(
            [round(x1) * rw + pw, round(y1) * rh + ph, round(x2) * rw + pw, round(y2) * rh + ph]
        )
        ys, xs = np.nonzero(x[0, 0].numpy() > 0.5)
        if len(xs):  # boxes that shrink below a pixel vanish in the resize
            seen = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
            np.testing.assert_allclose(seen, forward, atol=1.0)
        det = torch.tensor([[*forward, 0.9, 0.0]])
        back = postprocess(det, (h, w), (h0, w0), ((rh, rw), (pw, ph)))
        np.testing.assert_allclose(
            back[0, :4].numpy(), [round(x1), round(y1), round(x2), round(y2)], atol=1e-3
        )
        # and `preprocess` is the data pipeline's letterbox, in RGB order
        boxed, _, _ = letterbox(img, img_size, stride=32, auto=True)
        assert boxed.shape[:2] == (h, w)


def test_an_img_off_the_stride_is_rounded_up_as_the_reference_does(tmp_path: Path, caplog) -> None:
    """detect.py rounds --img-size up to a multiple of the largest stride (check_img_size): 200 runs as 224,
    the network sees sides that are multiples of 32 and the detections are those of --img 224."""
    from yolov7lib.engine.detect import detect_frame

    model, seen = _model(), []
    model.model[0].register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[2:])))
    scene = _scene()
    at_224 = detect_frame(model, scene, img_size=224)
    at_200 = detect_frame(model, scene, img_size=200)
    assert seen == [(160, 224), (160, 224)]
    assert len(at_224) == 2 and torch.equal(at_200, at_224)
    cv2.imwrite(str(tmp_path / "scene.png"), scene)
    with caplog.at_level("WARNING", logger="yolov7lib.engine.weights"):
        opts = DetectOptions(source=str(tmp_path / "scene.png"), img=200, nosave=True,
                             project=str(tmp_path / "runs"), progress=False)  # fmt: skip
        report = run_detect(opts, model=model)
    assert report.detections == 2 and seen[-1] == (160, 224)
    assert "--img 200 is not a multiple of the stride 32; using 224" in caplog.text


def test_detect_errors_are_clear(weights, tmp_path: Path, capsys) -> None:
    assert main(["detect", "--weights", str(weights), "--source", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    # the reference's webcam index and stream URLs are refused as such (before: "'0' does not exist", and
    # a URL with a query "matches no file", read as a glob)
    for source in ("0", "rtsp://camera.local/live", "https://www.youtube.com/watch?v=abc"):
        assert main(["detect", "--weights", str(weights), "--source", source]) == 1
        err = capsys.readouterr().err
        assert f"source {source!r}: webcams, streams and URLs are not read" in err, source
        assert "an image, a video, a folder or a glob of local files" in err
    # an empty source, as an unset shell variable gives (before: Path("") read the whole current folder)
    for empty in ("", " "):
        assert main(["detect", "--weights", str(weights), "--source", empty]) == 1
        assert "source is empty" in capsys.readouterr().err
    # a class index the model does not have (before: silently no detection at all)
    cv2.imwrite(str(tmp_path / "scene.png"), _scene())
    project = tmp_path / "runs"
    for bad in ("2", "-1"):
        assert main(["detect", "--weights", str(weights), "--source", str(tmp_path / "scene.png"),
                     "--classes", "1", bad, "--project", str(project)]) == 1  # fmt: skip
        assert f"--classes {bad}: not a class of the model (0 red, 1 green)" in capsys.readouterr().err
    assert not project.exists()  # refused before a run folder is made
    for n, listed in (
        (10, "0 c0, 1 c1, 2 c2, 3 c3, 4 c4, 5 c5, 6 c6, 7 c7, 8 c8, 9 c9)"),
        (11, "9 c9, ...)"),
    ):
        model = _model()
        model.names = [
            f"c{i}" for i in range(n)
        ]  # the message lists ten classes, and says when there are more
        opts = DetectOptions(source=str(tmp_path / "scene.png"), img=IMG, classes=[11], project=str(project))
        with pytest.raises(ValueError) as err:
            run_detect(opts, model=model)
        assert str(err.value).endswith(listed)
    assert main(["detect", "--source", str(tmp_path)]) == 2
    assert "--weights or --model" in capsys.readouterr().err


def test_the_printed_report_counts_skipped_inputs_in_words() -> None:
    from yolov7lib.engine.detect import DetectReport, format_report

    one = format_report(DetectReport("runs/detect/exp", skipped=[("a.txt", "not an image")]))
    two = format_report(DetectReport("runs/detect/exp", skipped=[("a.txt", "x"), ("b.avi", "y")]))
    assert "1 input skipped:\n  a.txt: not an image" in one and "2 inputs skipped:" in two
    # a data set's root as the source: its label files are counted, not each printed (before: one line
    # per label file)
    many = DetectReport("runs/detect/exp", skipped=[(f"labels/{i}.txt", "not an image") for i in range(45)])
    lines = format_report(many).splitlines()
    assert lines[1] == "45 inputs skipped:" and lines[2] == "  labels/0.txt: not an image"
    assert sum(line.startswith("  labels/") for line in lines) == 20
    assert "  ... and 25 more (--json lists them all)" in lines
    twenty = DetectReport("runs/detect/exp", skipped=[(f"{i}.txt", "not an image") for i in range(20)])
    assert "more (--json" not in format_report(twenty) and "  19.txt: not an image" in format_report(twenty)


def _model() -> torch.nn.Module:
    model = _fire_model()
    model.names = ["red", "green"]
    return model


def _write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (W0, H0))
    for i in range(frames):
        writer.write(_scene(seed=i))
    writer.release()


def test_save_conf_appends_each_detections_score_to_its_label_row(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "scene.png"), _scene())
    opts = DetectOptions(source=str(src), img=IMG, project=str(tmp_path / "runs"), save_txt=True,
                         save_conf=True, save_json=True, nosave=True, progress=False)  # fmt: skip
    report = run_detect(opts, model=_model())
    rows = np.loadtxt(Path(report.run_dir) / "labels" / "scene.txt", ndmin=2)
    assert rows.shape == (2, 6)  # class x y w h conf
    scores = {r["class"]: r["score"] for r in json.loads(Path(report.predictions_json).read_text())}
    for row in rows:
        assert row[5] == pytest.approx(scores[int(row[0])], abs=1e-5) and row[5] > 0.9


def test_exist_ok_run_never_overwrites_labels_json_or_videos_already_there(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "scene.png"), _scene())
    _write_video(src / "clip.mp4", 2)
    run = tmp_path / "runs" / "exp"
    (run / "labels").mkdir(parents=True)
    users = {
        run / "labels" / "scene.txt": b"a user's labels",
        run / "labels" / "clip_1.txt": b"a user's frame labels",
        run / "predictions.json": b"a user's predictions",
        run / "clip.mp4": b"a user's video",
        run / "scene.png": b"a user's image",
    }
    for path, data in users.items():
        path.write_bytes(data)
    opts = DetectOptions(source=str(src), img=IMG, project=str(tmp_path / "runs"), exist_ok=True,
                         save_txt=True, save_json=True, progress=False)  # fmt: skip
    report = run_detect(opts, model=_model())
    assert report.run_dir == str(run) and report.images == 1 and report.frames == 2
    assert {path: path.read_bytes() for path in users} == users  # every earlier file as it was
    assert np.loadtxt(run / "labels" / "scene_2.txt", ndmin=2).shape == (2, 5)
    assert np.loadtxt(run / "labels" / "clip_1_2.txt", ndmin=2).shape == (2, 5)
    assert report.predictions_json == str(run / "predictions_2.json")
    assert len(json.loads((run / "predictions_2.json").read_text())) == 6
    cap = cv2.VideoCapture(str(run / "clip_2.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()


def test_a_nested_source_keeps_its_subfolders_so_each_output_names_its_own_input(tmp_path: Path) -> None:
    """train/x.png and valid/x.png (a whole data set as the source) must not become x.txt and x_2.txt: the
    latter is also the name of x_2.png's results. Outputs mirror the folders under the source's."""
    src = tmp_path / "set"
    for rel, img in {"train/x.png": _scene(), "valid/x.png": np.zeros((H0, W0, 3), np.uint8),
                     "x_2.png": _scene(seed=1)}.items():  # fmt: skip
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / rel), img)
    opts = DetectOptions(source=str(src), img=IMG, project=str(tmp_path / "runs"), save_txt=True,
                         progress=False)  # fmt: skip
    run = Path(run_detect(opts, model=_model()).run_dir)
    for rel, n in {"train/x": 2, "valid/x": 0, "x_2": 2}.items():
        rows = [line.split() for line in (run / "labels" / f"{rel}.txt").read_text().splitlines()]
        assert len(rows) == n and all(len(r) == 5 for r in rows), rel
        assert np.array_equal(cv2.imread(str(run / f"{rel}.png")).shape, (H0, W0, 3))
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*.png")) == [
        "train/x.png", "valid/x.png", "x_2.png"]  # fmt: skip
    # a flat folder, a glob or one file keep the plain names of the reference's detect.py
    one = DetectOptions(source=str(src / "train" / "x.png"), img=IMG, project=str(tmp_path / "runs"),
                        save_txt=True, nosave=True, progress=False)  # fmt: skip
    flat = run_detect(one, model=_model())
    assert (Path(flat.run_dir) / "labels" / "x.txt").is_file()


def test_annotated_videos_fall_back_to_mjpg_and_unwritable_outputs_are_errors(
    tmp_path: Path, monkeypatch
) -> None:
    """Where OpenCV has no mp4v encoder the annotated video is MJPG `.avi`, every frame at the input's size;
    where no writer opens (a read-only run folder) or an image cannot be written, the run fails naming
    the file (before: no video or image was written and the run reported success)."""
    real_writer, mp4v = cv2.VideoWriter, cv2.VideoWriter_fourcc(*"mp4v")

    def no_mp4v(path, fourcc, *args):
        return real_writer() if fourcc == mp4v else real_writer(path, fourcc, *args)

    _write_video(tmp_path / "clip.mp4", 3)
    monkeypatch.setattr(cv2, "VideoWriter", no_mp4v)
    opts = DetectOptions(source=str(tmp_path / "clip.mp4"), img=IMG, project=str(tmp_path / "runs"),
                         progress=False)  # fmt: skip
    run = Path(run_detect(opts, model=_model()).run_dir)
    assert sorted(p.name for p in run.iterdir()) == ["clip.avi"]
    cap = cv2.VideoCapture(str(run / "clip.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and cap.get(cv2.CAP_PROP_FPS) == 5.0
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (W0, H0)
    cap.release()

    monkeypatch.setattr(cv2, "VideoWriter", lambda *args: real_writer())
    with pytest.raises(OSError, match=r"cannot write .*clip: no mp4v \.mp4 or MJPG \.avi writer opens"):
        run_detect(opts, model=_model())
    cv2.imwrite(str(tmp_path / "scene.png"), _scene())
    monkeypatch.setattr(cv2, "imwrite", lambda *args: False)
    image = DetectOptions(source=str(tmp_path / "scene.png"), img=IMG, project=str(tmp_path / "runs"),
                          progress=False)  # fmt: skip
    with pytest.raises(OSError, match=r"cannot write .*scene\.png"):
        run_detect(image, model=_model())


def test_ctrl_c_in_a_video_counts_and_names_it_beside_the_frames_it_kept(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Ctrl-C at the third of five frames: the report counts the video and its 2 frames (as many as its
    label files, json records and annotated frames) and names it (before: '0 videos (0 frames): 4
    detections', with the partial outputs unmentioned)."""
    from yolov7lib.engine import detect as detect_module

    _write_video(tmp_path / "clip.mp4", 5)
    calls, real = [], detect_module.detect_frame

    def interrupted_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(detect_module, "detect_frame", interrupted_on_the_third)
    opts = DetectOptions(source=str(tmp_path / "clip.mp4"), img=IMG, project=str(tmp_path / "runs"),
                         save_txt=True, save_json=True, progress=False)  # fmt: skip
    with pytest.raises(detect_module.DetectInterrupted) as stop:
        run_detect(opts, model=_model())
    report, run = stop.value.report, tmp_path / "runs" / "exp"
    assert (report.videos, report.frames, report.detections) == (1, 2, 4)
    assert report.stopped_in == str(tmp_path / "clip.mp4")
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["clip_1.txt", "clip_2.txt"]
    assert sorted({r["frame"] for r in json.loads((run / "predictions.json").read_text())}) == [1, 2]
    cap = cv2.VideoCapture(str(run / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()
    text = detect_module.format_report(report)
    assert "1 videos (2 frames): 4 detections" in text and f"part-way through {tmp_path / 'clip.mp4'}" in text
    assert report.to_dict()["stopped_in"] == str(tmp_path / "clip.mp4")  # --json says it too
    calls[:] = [1, 1]  # stopped at its first frame: nothing of the video was written, nothing is counted
    with pytest.raises(detect_module.DetectInterrupted) as stop:
        run_detect(opts, model=_model())
    assert (stop.value.report.videos, stop.value.report.frames, stop.value.report.stopped_in) == (0, 0, None)


def test_a_video_damaged_part_way_counts_the_frames_it_kept_with_the_video(
    tmp_path: Path, monkeypatch
) -> None:
    """OpenCV failing at the third of five frames: the video is listed as skipped with the error and counted
    with its 2 frames, as many as its label files (before: '0 videos (2 frames)')."""
    from yolov7lib.engine import detect as detect_module

    _write_video(tmp_path / "clip.mp4", 5)
    calls, real = [], detect_module.detect_frame

    def damaged_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise cv2.error("damaged frame")
        return real(*args, **kwargs)

    monkeypatch.setattr(detect_module, "detect_frame", damaged_at_the_third)
    opts = DetectOptions(source=str(tmp_path / "clip.mp4"), img=IMG, project=str(tmp_path / "runs"),
                         save_txt=True, progress=False)  # fmt: skip
    report = run_detect(opts, model=_model())
    labels = sorted(p.name for p in (Path(report.run_dir) / "labels").iterdir())
    assert (report.videos, report.frames, labels) == (1, 2, ["clip_1.txt", "clip_2.txt"])
    assert report.skipped == [(str(tmp_path / "clip.mp4"), "OpenCV error: damaged frame after 2 frames "
                               "(those are in the results)")]  # fmt: skip


def test_inputs_whose_outputs_would_share_a_name_take_their_suffix_into_it(tmp_path: Path) -> None:
    """a.mp4 and a.avi (both annotated as .mp4, both labelled a_<n>.txt), e.jpg and e.png, and c.mkv beside
    c_2.png (frame 2's labels) are named a_mp4, a_avi, e_jpg.jpg, e_png.png, c_mkv; an image and a video
    of one stem (b), and two images d.png and d_1.png (no video d), keep the reference's
    names (before: a.avi's copy was a.mp4, a.mp4's a_2.mp4, and a.avi's frames took a_1..a_3.txt while
    a.mp4's were a_1_2.txt, a_2_2.txt, a_3_2.txt, a_4.txt)."""
    src = tmp_path / "mixed"
    src.mkdir()
    _write_video(src / "a.mp4", 4)
    _write_video(src / "a.avi", 3)
    _write_video(src / "b.mp4", 2)
    _write_video(src / "c.mkv", 2)
    for name in ("a.jpg", "b.jpg", "c_2.png", "d.png", "d_1.png", "e.jpg", "e.png"):
        cv2.imwrite(str(src / name), _scene())
    opts = DetectOptions(source=str(src), img=IMG, project=str(tmp_path / "runs"), save_txt=True,
                         progress=False)  # fmt: skip
    run = Path(run_detect(opts, model=_model()).run_dir)
    labels = {p.stem for p in (run / "labels").iterdir()}
    assert labels == {"a", "b", "c_2", *(f"a_mp4_{n}" for n in range(1, 5)),
                      *(f"a_avi_{n}" for n in range(1, 4)), "b_1", "b_2", "c_mkv_1", "c_mkv_2",
                      "d", "d_1", "e_jpg", "e_png"}  # fmt: skip
    copies = {p.name for p in run.iterdir() if p.is_file()}
    assert copies == {"a.jpg", "b.jpg", "c_2.png", "a_mp4.mp4", "a_avi.mp4", "b.mp4", "c_mkv.mp4",
                      "d.png", "d_1.png", "e_jpg.jpg", "e_png.png"}  # fmt: skip
    for name, frames in {"a_mp4.mp4": 4, "a_avi.mp4": 3, "b.mp4": 2}.items():
        cap = cv2.VideoCapture(str(run / name))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames, name
        cap.release()


def test_a_video_shows_its_frames_progress(tmp_path: Path, capsys) -> None:
    """A long video counts its frames on the progress bar (before: 'detect 0/1' until the whole video was
    done, whatever its length)."""
    _write_video(tmp_path / "clip.mp4", 3)
    opts = DetectOptions(source=str(tmp_path / "clip.mp4"), img=IMG, project=str(tmp_path / "runs"),
                         nosave=True)  # fmt: skip
    assert run_detect(opts, model=_model()).frames == 3
    err = capsys.readouterr().err
    assert "clip.mp4:" in err and "/3 [" in err and "frame/s" in err  # of the 3 frames announced


def test_a_file_or_folder_with_glob_characters_in_its_name_is_read_as_itself(
    tmp_path: Path, monkeypatch
) -> None:
    """`clips [2023]/clip [1].mp4` exists: read as that folder and that file, not as patterns (before: both
    'matched no file', `[2023]` and `[1]` being read as character classes); a real glob still works, and
    so does a folder whose name is a number (not a webcam index)."""
    folder = tmp_path / "clips [2023]"
    folder.mkdir()
    _write_video(folder / "clip [1].mp4", 2)
    cv2.imwrite(str(folder / "2.png"), _scene())
    (tmp_path / "2024").mkdir()  # a folder named like the reference's webcam index is read as a folder
    cv2.imwrite(str(tmp_path / "2024" / "3.png"), _scene())
    monkeypatch.chdir(tmp_path)
    for source, frames, images in ((folder, 2, 1), (folder / "clip [1].mp4", 2, 0),
                                   (tmp_path / "clips ?2023?" / "*.png", 0, 1), ("2024", 0, 1)):  # fmt: skip
        opts = DetectOptions(source=str(source), img=IMG, project=str(tmp_path / "runs"), nosave=True,
                             progress=False)  # fmt: skip
        report = run_detect(opts, model=_model())
        assert (report.frames, report.images, report.skipped) == (frames, images, []), source
