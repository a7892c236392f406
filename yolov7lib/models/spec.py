"""The architecture spec: the official cfg format, read, written, built and transformed.

A spec is a plain dict (``model.cfg``, what checkpoints store):

- ``nc``, ``depth_multiple``, ``width_multiple``, ``anchors`` (pixels, one list per level), ``ch``;
- ``backbone`` and ``head``: rows ``[from, number, module, args]``, ``from`` being -1 (previous
  layer), a negative offset, an absolute layer index or a list of those;
- optional yolov7lib keys: ``name``, ``fused`` (layers built in their fused deploy form) and
  ``groups`` (labelled ranges of layers, e.g. one ELAN computational block, for drawing Figures 2-7).

:class:`SpecBuilder` writes specs from code (the architectures of :mod:`yolov7lib.models.architectures`);
:func:`load_cfg` reads users' YAML files; :func:`deploy_spec` turns a training spec into its deploy form.
"""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "HEAD_TYPES",
    "SpecBuilder",
    "check_nc",
    "deploy_spec",
    "dump_cfg",
    "load_cfg",
    "resolve_from",
    "spec_rows",
]

HEAD_TYPES = ("Detect", "IDetect", "IAuxDetect")
Row = list[Any]
From = int | list[int]


def spec_rows(cfg: dict[str, Any]) -> list[Row]:
    """All rows of a spec, backbone then head (layer ``i`` is row ``i``)."""
    return list(cfg.get("backbone") or []) + list(cfg.get("head") or [])


def resolve_from(f: From, i: int) -> list[int]:
    """Absolute indices of the layers that layer ``i`` reads (``f`` as written in the row)."""
    return [j if j >= 0 else i + j for j in ([f] if isinstance(f, int) else f)]


def check_nc(nc: Any, source: str = "nc") -> int:
    """The number of classes as an int; ValueError unless it is a whole number of at least 1."""
    whole = isinstance(nc, numbers.Integral) or (isinstance(nc, float) and nc.is_integer())
    if isinstance(nc, bool) or not whole or nc < 1:
        raise ValueError(f"{source}: the number of classes must be a whole number of at least 1, got {nc!r}")
    return int(nc)


def validate_cfg(cfg: Any, source: str = "cfg") -> dict[str, Any]:
    """Check the shape of a spec and return it; raise ValueError naming the first problem found."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{source}: a model cfg must be a mapping, got {type(cfg).__name__}")
    missing = [k for k in ("nc", "anchors", "backbone", "head") if k not in cfg]
    if missing:
        raise ValueError(f"{source}: missing key(s) {', '.join(missing)}")
    check_nc(cfg["nc"], f"{source}: nc")
    rows = spec_rows(cfg)
    if not rows:
        raise ValueError(f"{source}: the model has no layers")
    for i, row in enumerate(rows):
        if not (isinstance(row, list | tuple) and len(row) == 4):
            raise ValueError(f"{source}: layer {i} must be [from, number, module, args], got {row!r}")
        f, n, module, args = row
        if not isinstance(module, str) or not isinstance(args, list | tuple) or not isinstance(n, int):
            raise ValueError(f"{source}: layer {i} must be [from, number, module, args], got {row!r}")
        sources = resolve_from(f, i) if isinstance(f, int | list) else None
        if sources is None or any(not isinstance(j, int) or j >= i or (j < 0 and i > 0) for j in sources):
            raise ValueError(f"{source}: layer {i} reads from {f!r}, which is not an earlier layer")
    if rows[-1][2] not in HEAD_TYPES:
        raise ValueError(
            f"{source}: the last layer must be one of {', '.join(HEAD_TYPES)}, got {rows[-1][2]!r}"
        )
    return cfg


def load_cfg(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an official-format cfg YAML file (never modified)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model cfg {str(p)!r} does not exist")
    with p.open(encoding="utf-8") as fh:
        try:
            cfg = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise ValueError(f"{p}: not valid YAML ({err})") from err
        except UnicodeDecodeError as err:  # a checkpoint given where a cfg is expected
            raise ValueError(
                f"{p}: not a UTF-8 text file, so not a model cfg YAML ({err.reason} at byte {err.start}); "
                "a checkpoint (.pt) goes to --weights"
            ) from err
    return validate_cfg(cfg, str(p))


def dump_cfg(cfg: dict[str, Any], path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write a spec as YAML in the official cfg format; refuses to replace an existing file by default."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=None), encoding="utf-8")
    tmp.replace(p)
    return p


def _plain(obj: Any) -> Any:
    """Tuples to lists, recursively, so that YAML stays in the official flow style."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


class SpecBuilder:
    """Write a spec row by row from code, with labelled groups of layers.

    Builder functions (:mod:`yolov7lib.models.blocks`) take the absolute indices of their inputs,
    call :meth:`add` and return the index of their output. ``from`` entries are written as -1 for the
    previous layer, as a negative offset when the source lies inside the outermost open group (or is
    its input) and as an absolute index otherwise, which reproduces the look of the official cfgs.
    """

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.groups: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.backbone_end: int | None = None

    @property
    def last(self) -> int:
        """Index of the last layer added."""
        return len(self.rows) - 1

    def _encode(self, src: int) -> int:
        i = len(self.rows)
        if not 0 <= src < i:
            raise ValueError(f"layer {i} cannot read from layer {src}")
        if src == i - 1:
            return -1
        if self._open and src >= self._open[0]["first"] - 1:
            return src - i
        return src

    def add(
        self, module: str, args: Sequence[Any] = (), src: int | Sequence[int] | None = None, n: int = 1
    ) -> int:
        """Append a row reading ``src`` (absolute index or indices; None = previous layer)."""
        if src is None:
            f: From = -1
        elif isinstance(src, int):
            f = self._encode(src)
        elif module in HEAD_TYPES:  # heads list their inputs by absolute index, as the reference does
            f = [self._encode(j) if j < 0 else j for j in src]
        else:
            f = [self._encode(j) for j in src]
        self.rows.append([f, n, module, list(args)])
        return self.last

    @contextmanager
    def group(self, name: str, kind: str, **info: Any) -> Iterator[dict[str, Any]]:
        """Label the layers added inside the ``with`` block (nested groups are allowed)."""
        record = {"name": name, "kind": kind, "first": len(self.rows), "last": None, **info}
        self._open.append(record)
        try:
            yield record
        finally:
            self._open.pop()
            record["last"] = self.last
            if record["last"] >= record["first"]:
                self.groups.append(record)

    def end_backbone(self) -> None:
        """Mark the rows added so far as the backbone (the rest is the head)."""
        self.backbone_end = len(self.rows)

    def spec(
        self,
        anchors: Sequence[Sequence[float]],
        nc: int = 80,
        name: str | None = None,
        depth_multiple: float = 1.0,
        width_multiple: float = 1.0,
    ) -> dict[str, Any]:
        """The finished spec dict."""
        cut = len(self.rows) if self.backbone_end is None else self.backbone_end
        cfg: dict[str, Any] = {}
        if name:
            cfg["name"] = name
        cfg.update(
            nc=nc,
            depth_multiple=depth_multiple,
            width_multiple=width_multiple,
            anchors=[list(a) for a in anchors],
            backbone=copy.deepcopy(self.rows[:cut]),
            head=copy.deepcopy(self.rows[cut:]),
            groups=sorted(copy.deepcopy(self.groups), key=lambda g: (g["first"], -g["last"])),
        )
        return cfg


def _num_levels(cfg: dict[str, Any], head_row: Row) -> int:
    anchors = cfg["anchors"]
    if isinstance(anchors, list):
        return len(anchors)
    n_inputs = len(resolve_from(head_row[0], 0))
    return n_inputs // 2 if head_row[2] == "IAuxDetect" else n_inputs


def deploy_spec(
    cfg: dict[str, Any], *, drop_aux: bool = True, fold_implicit: bool = True, fused: bool | None = None
) -> tuple[dict[str, Any], dict[int, int]]:
    """The spec of the deploy graph and the map old layer index -> new layer index.

    ``drop_aux`` removes the auxiliary head and every layer that only feeds it (IAuxDetect ->
    IDetect); ``fold_implicit`` turns IDetect into Detect (the implicit vectors fold into the
    detection convolutions). ``fused`` sets the spec's ``fused`` flag (None keeps it).
    """
    rows = spec_rows(cfg)
    head_i = len(rows) - 1
    head_row = rows[head_i]
    head_type = head_row[2]
    sources = resolve_from(head_row[0], head_i)
    if head_type == "IAuxDetect" and fold_implicit and not drop_aux:
        raise ValueError(
            "folding the implicit knowledge of IAuxDetect needs drop_aux=True (no such head type)"
        )

    keep = set(range(len(rows)))
    new_type = head_type
    if head_type == "IAuxDetect" and drop_aux:
        nl = _num_levels(cfg, head_row)
        sources = sources[:nl]
        keep = {head_i}
        stack = list(sources)
        while stack:  # every ancestor of the lead inputs
            j = stack.pop()
            if j >= 0 and j not in keep:
                keep.add(j)
                stack.extend(resolve_from(rows[j][0], j))
        new_type = "IDetect"
    if new_type == "IDetect" and fold_implicit:
        new_type = "Detect"

    kept = sorted(keep)
    index_map = {old: new for new, old in enumerate(kept)}
    new_rows: list[Row] = []
    for new_i, old_i in enumerate(kept):
        f, n, module, args = copy.deepcopy(rows[old_i])
        if old_i == head_i:
            f, module = sources, new_type
        entries = [f] if isinstance(f, int) else list(f)
        encoded = []
        for e in entries:
            if e < 0 and old_i + e < 0:  # the network input
                encoded.append(e)
                continue
            target = index_map[e if e >= 0 else old_i + e]
            encoded.append(e if (e < 0 and new_i + e == target) else target)
        new_f: From = encoded[0] if isinstance(f, int) else encoded
        new_rows.append([new_f, n, module, args])

    out = copy.deepcopy({k: v for k, v in cfg.items() if k not in ("backbone", "head", "groups")})
    n_backbone = sum(1 for old in kept if old < len(cfg.get("backbone") or []))
    out["backbone"], out["head"] = new_rows[:n_backbone], new_rows[n_backbone:]
    if fused is not None:
        out["fused"] = fused
    groups = []
    for g in cfg.get("groups") or []:
        members = [index_map[j] for j in range(g["first"], g["last"] + 1) if j in index_map]
        if members:
            groups.append({**g, "first": min(members), "last": max(members)})
    if groups:
        out["groups"] = groups
    return out, index_map
