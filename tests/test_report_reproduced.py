"""Reproduced values (`yolov7lib.report.reproduced`): validation, fan-out to table rows, JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from yolov7lib import paper
from yolov7lib.report import Reproduced, Reproductions

SCALE = "exact (architecture)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((11, "yolov7", "params"), "Tables 1-10"),
        ((1, "yolov8", "params"), "no row for"),
        ((1, "yolov7", "fps"), "no column 'fps'"),
        ((1, "yolov7", "size"), "setting"),
        ((1, "improvement@yolov7", "params"), "derived"),
        ((1, "yolov7-tiny", "params"), "pass variant="),
    ],
)
def test_unknown_or_derived_cells_are_refused(args: tuple[int, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Reproductions().add(*args, value=1.0, scale=SCALE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value": math.nan}, "finite number"),
        ({"value": True}, "finite number"),
        ({"value": "36.9"}, "finite number"),
        ({"scale": " "}, "needs a scale"),
        ({"spread": -0.1}, "spread must be >= 0"),
        ({"seeds": 0}, "seeds must be a positive integer"),
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"value": 36.9, "scale": SCALE, **kwargs}
    with pytest.raises(ValueError, match=message):
        Reproductions().add(1, "yolov7", "params", **args)  # type: ignore[arg-type]


def test_rows_are_found_by_paper_spelling_and_stored_by_row_id() -> None:
    reps = Reproductions()
    rec = reps.add(1, "YOLOv7-X", "params", 71.31, SCALE)
    assert rec.key == (1, "yolov7x", "params") and reps[(1, "yolov7x", "params")] is rec
    assert reps.add(1, "YOLOv7-tiny@416", "ap_val", 3.0, "tiny run").key == (1, "yolov7-tiny@416", "ap_val")


def test_a_cell_is_reproduced_once() -> None:
    reps = Reproductions()
    reps.add(1, "yolov7", "params", 36.9, SCALE)
    reps.add(1, "yolov7", "params", 36.9, SCALE)  # the same record again is harmless
    with pytest.raises(ValueError, match="already reproduced"):
        reps.add(1, "yolov7", "params", 37.6, SCALE)
    assert len(reps) == 1


def test_a_model_value_fills_every_row_that_reports_the_model() -> None:
    reps = Reproductions()
    added = reps.add_model("yolov7x", "params", 71.311741, SCALE)
    expected = {
        (r.table, r.id)
        for t in paper.TABLES.values()
        for r in t.models
        if r.registry == "yolov7x" and "params" in r.columns
    }
    assert (
        {(a.table, a.row) for a in added}
        == expected
        == {(1, "yolov7x"), (2, "yolov7x"), (3, "compound-v7-x"), (9, "yolov7x")}
    )
    assert all(reps[a.key].value == 71.311741 for a in added)


def test_size_dependent_columns_need_the_size_where_rows_differ() -> None:
    reps = Reproductions()
    with pytest.raises(ValueError, match="pass size="):
        reps.add_model("yolov7-tiny", "flops", 5.8, SCALE)
    assert [a.row for a in reps.add_model("yolov7-tiny", "flops", 5.8, SCALE, size=416)] == [
        "yolov7-tiny@416"
    ]
    assert len(reps.add_model("yolov7-tiny", "params", 6.2, SCALE)) == 2  # #Param does not depend on size
    with pytest.raises(ValueError, match="no table row"):
        reps.add_model("yolov7-tiny", "flops", 5.8, SCALE, size=640)
    with pytest.raises(KeyError, match="not a kit model"):
        reps.add_model("yolox-s", "params", 9.0, SCALE)


def test_json_round_trip(tmp_path: Path) -> None:
    reps = Reproductions()
    reps.add(1, "yolov7", "params", 36.905341, SCALE, source="count")
    reps.add(
        6, "lead guided", "ap_val", 12.3456789, "generated data, 320 px, 30 epochs, CPU", spread=0.4, seeds=3
    )
    path = reps.to_json(tmp_path / "sub" / "values.json")
    back = Reproductions.from_json(path)
    assert dict(back) == dict(reps)
    assert not list(path.parent.glob(".*.tmp"))


def test_json_defaults_and_model_entries(tmp_path: Path) -> None:
    path = tmp_path / "arch.json"
    path.write_text(
        json.dumps(
            {
                "scale": SCALE,
                "source": "stage tables",
                "values": [
                    {"table": 1, "row": "YOLOv7", "column": "flops", "value": 104.5},
                    {
                        "model": "yolov7-tiny",
                        "size": 320,
                        "column": "flops",
                        "value": 3.42,
                        "source": "override",
                    },
                    {
                        "table": 6,
                        "row": "independent",
                        "column": "ap_val",
                        "value": 9.5,
                        "scale": "tiny run",
                        "seeds": 2,
                        "spread": 0.3,
                    },
                ],
            }
        )
    )
    before = path.read_bytes()
    reps = Reproductions.from_json(path)
    assert path.read_bytes() == before  # the user's file is only read
    assert reps[(1, "yolov7", "flops")] == Reproduced(1, "yolov7", "flops", 104.5, SCALE, "stage tables")
    assert reps[(1, "yolov7-tiny@320", "flops")].source == "override"
    assert reps[(6, "independent", "ap_val")] == Reproduced(
        6, "independent", "ap_val", 9.5, "tiny run", "stage tables", 0.3, 2
    )
    assert len(reps) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"scale": "x"}', "expected keys 'values'"),
        ('{"values": {}}', "must be a list"),
        ('[{"table": 1, "row": "yolov7", "column": "params", "value": 1}]', "entry 0: missing 'scale'"),
        (
            '[{"table": 1, "row": "yolov7", "column": "params", "value": 1, "scale": "s", "unit": "M"}]',
            "entry 0: unknown keys \\['unit'\\]",
        ),
        (
            '{"scale": "s", "values": [{"model": "yolov7", "column": "params", "value": 1},'
            ' {"model": "yolov7", "row": "yolov7", "column": "params", "value": 1}]}',
            "entry 1: give either",
        ),
        ('{"scale": "s", "values": [{"column": "params", "value": 1}]}', "entry 0: an entry names a cell"),
        (
            '{"scale": "s", "values": [{"table": 2, "row": "yolox-s", "column": "ap_val", "value": null}]}',
            "entry 0: .*finite number",
        ),
    ],
)
def test_bad_json_names_the_file_and_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        Reproductions.from_json(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json"):
        Reproductions.from_json(tmp_path / "nowhere.json")


def test_frame_and_lookup() -> None:
    reps = Reproductions([Reproduced(2, "yolov7", "fps", 3.5, "CPU, 2 threads")])
    frame = reps.to_frame()
    assert frame.to_dict("records") == [
        {
            "table": 2,
            "row": "yolov7",
            "column": "fps",
            "value": 3.5,
            "scale": "CPU, 2 threads",
            "source": "",
            "spread": None,
            "seeds": None,
        }
    ]
    assert reps.lookup() == {(2, "yolov7", "fps"): 3.5}


def test_a_cell_reproduced_again_at_another_scale_is_an_error() -> None:
    """Only an identical record may be added twice: same value, another scale or source is a conflict."""
    reps = Reproductions()
    reps.add(1, "yolov7", "params", 36.9, SCALE)
    with pytest.raises(ValueError, match="already reproduced"):
        reps.add(1, "yolov7", "params", 36.9, "another scale")
    with pytest.raises(ValueError, match="already reproduced"):
        reps.add(1, "yolov7", "params", 36.9, SCALE, source="elsewhere")
    assert reps[(1, "yolov7", "params")].scale == SCALE and reps[(1, "yolov7", "params")].source == ""


def test_a_size_keeps_the_rows_that_print_no_size() -> None:
    """YOLOR-CSP's rows are all at 640 px except Table 5's, which prints no size: size=640 fills them all."""
    expected = {(r.table, r.id) for r in paper.rows_for_model("yolor-csp") if "ap_val" in r.columns}
    assert (5, "base-yolor-csp") in expected
    with_size = Reproductions().add_model("yolor-csp", "ap_val", 40.0, SCALE, size=640)
    without = Reproductions().add_model("yolor-csp", "ap_val", 40.0, SCALE)
    assert {(a.table, a.row) for a in with_size} == {(a.table, a.row) for a in without} == expected


def test_zero_values_survive_the_json_round_trip(tmp_path: Path) -> None:
    """An AP of 0.0 (a proxy that learned nothing) and a spread of 0.0 are values, not missing ones."""
    reps = Reproductions()
    reps.add(4, "base (3-S ELAN)", "ap_val", 0.0, SCALE, spread=0.0, seeds=2)
    reps.add(1, "yolov7", "params", 36.9, SCALE)
    back = Reproductions.from_json(reps.to_json(tmp_path / "values.json"))
    assert dict(back) == dict(reps)
    assert back[(4, "base-3-s-elan", "ap_val")].value == 0.0
    assert back[(4, "base-3-s-elan", "ap_val")].spread == 0.0
