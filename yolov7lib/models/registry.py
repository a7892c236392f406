"""The model registry: every architecture of the paper and of its baselines, by name (timm style).

``create_model("yolov7")`` builds the training graph (IDetect with implicit knowledge for P5 models,
IAuxDetect with lead and auxiliary heads for P6 models); ``deploy=True`` builds the inference graph
in its deployed form: BatchNorms folded, RepConvs as one 3x3 convolution, plain Detect, no auxiliary
heads, i.e. exactly the structure :func:`~yolov7lib.models.reparam.reparameterize` returns.
``create_model("path/to/cfg.yaml")`` reads an official-format cfg file.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yolov7lib.models.ablations import register_ablations
from yolov7lib.models.architectures import ANCHORS_P6, ANCHORS_TINY, CSPNet, CSPStage, ELANNet, yolov3_spec
from yolov7lib.models.blocks import ELAN
from yolov7lib.models.graph import Model
from yolov7lib.models.scaling import compound_scale, scale_depth, scale_width, v7x_light
from yolov7lib.models.spec import check_nc, deploy_spec, load_cfg, validate_cfg

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "model_spec", "register_model"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: how to write its spec, its native input size and where it comes from."""

    name: str
    spec: Callable[[int], dict[str, Any]]  # nc -> training-graph spec
    img_size: int
    source: str
    arch: ELANNet | CSPNet | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    arch: ELANNet | CSPNet | Callable[[int], dict[str, Any]],
    img_size: int,
    source: str,
    *,
    overwrite: bool = False,
) -> ModelEntry:
    """Add an architecture to the registry (an ELANNet / CSPNet, or a function nc -> spec).

    A name that is already registered, the paper's models included, is refused unless ``overwrite``.
    """
    _ensure_loaded()  # the paper's models first, so that a user's name can never be replaced by them
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"model {name!r} is already registered (from {_REGISTRY[name].source}); "
            "choose another name, or pass overwrite=True to replace it"
        )
    if isinstance(arch, ELANNet | CSPNet):
        entry = ModelEntry(name, lambda nc, a=arch: a.spec(name, nc), img_size, source, arch)
    else:
        entry = ModelEntry(name, arch, img_size, source)
    _REGISTRY[name] = entry
    return entry


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name raises ValueError listing the valid names."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _is_cfg_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or os.sep in name or Path(name).is_file()


def model_spec(name_or_cfg: str | os.PathLike[str] | dict[str, Any], nc: int | None = None) -> dict[str, Any]:
    """The training-graph spec of a registered name, a cfg file or a spec dict (nc overridden if given)."""
    _ensure_loaded()
    if nc is not None:
        nc = check_nc(nc)
    if isinstance(name_or_cfg, dict):
        cfg = copy.deepcopy(dict(validate_cfg(name_or_cfg)))
    elif isinstance(name_or_cfg, str) and name_or_cfg in _REGISTRY:
        cfg = _REGISTRY[name_or_cfg].spec(80 if nc is None else int(nc))
    elif isinstance(name_or_cfg, os.PathLike) or _is_cfg_path(str(name_or_cfg)):
        cfg = load_cfg(name_or_cfg)
    else:
        cfg = get_entry(str(name_or_cfg)).spec(80 if nc is None else int(nc))  # unknown name: lists names
    if nc is not None:
        cfg["nc"] = int(nc)
    return cfg


def create_model(
    name_or_cfg: str | os.PathLike[str] | dict[str, Any],
    nc: int | None = None,
    deploy: bool = False,
    ch: int | None = None,
) -> Model:
    """Build a model by registry name, cfg file path or spec dict.

    ``nc`` defaults to 80 for registry names and to the file's ``nc`` for cfg files; ``ch`` (input
    channels) to the spec's own ``ch``, else 3, so ``create_model(model.cfg)`` rebuilds ``model``.
    ``deploy=True`` gives the deployed inference graph (fused, plain Detect, no auxiliary heads).
    """
    cfg = model_spec(name_or_cfg, nc)
    if deploy:
        cfg, _ = deploy_spec(cfg, fused=True)
    return Model(cfg, ch=ch)


_LOADED = False


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        _register_paper_models()


def _register_paper_models() -> None:
    """The models of Tables 1, 2 and 9 (numbers from the official implementation's cfgs)."""
    paper = "YOLOv7 paper, Table 1/2/9"
    # ---- YOLOv7 (P5, normal GPU) ------------------------------------------------------------------
    yolov7 = ELANNet(
        stem=((32, 1), (64, 2), (64, 1), (128, 2)),
        stages=(
            ELAN(64, 64, 2, 2, 256),
            ELAN(128, 128, 2, 2, 512),
            ELAN(256, 256, 2, 2, 1024),
            ELAN(256, 256, 2, 2, 1024),
        ),
        down=(128, 256, 512),
        spp=512,
        lateral=(256, 128),
        top_down=(ELAN(256, 128, 4, 1, 256), ELAN(128, 64, 4, 1, 128)),
        neck_down=(128, 256),
        bottom_up=(ELAN(256, 128, 4, 1, 256), ELAN(512, 256, 4, 1, 512)),
        outputs=(256, 512, 1024),
        output_conv="RepConv",
    )
    register_model("yolov7", yolov7, 640, paper)
    # YOLOv7-X by the paper's compound scaling (Section 3.2): stack scaling on the neck ("v7-X light"),
    # then computational-block depth x1.5 and transition width x1.25 (Table 3)
    light = v7x_light(yolov7)
    register_model("yolov7x", compound_scale(light, depth=1.5), 640, paper)
    table3 = "YOLOv7 paper, Table 3 (scaling ablation)"
    register_model("yolov7x-light", light, 640, table3)
    register_model("yolov7x-light-width1.25", scale_width(light, 1.25), 640, table3)
    register_model("yolov7x-light-depth2.0", scale_depth(light, 2.0), 640, table3)
    # ---- YOLOv7-tiny (edge GPU): LeakyReLU; the -SiLU variant of Table 2/9 uses SiLU ----------------
    tiny = ELANNet(
        stem=((32, 2), (64, 2)),
        stages=(
            ELAN(32, 32, 2, 1, 64),
            ELAN(64, 64, 2, 1, 128),
            ELAN(128, 128, 2, 1, 256),
            ELAN(256, 256, 2, 1, 512),
        ),
        down=(0, 0, 0),
        down_type="MP",
        spp=256,
        spp_tiny=True,
        lateral=(128, 64),
        top_down=(ELAN(64, 64, 2, 1, 128), ELAN(32, 32, 2, 1, 64)),
        neck_down=(128, 256),
        neck_down_type="Conv",
        bottom_up=(ELAN(64, 64, 2, 1, 128), ELAN(128, 128, 2, 1, 256)),
        outputs=(128, 256, 512),
        output_conv="Conv",
        act="nn.LeakyReLU(0.1)",
        anchors=ANCHORS_TINY,
    )
    register_model("yolov7-tiny", tiny, 640, paper)
    register_model("yolov7-tiny-silu", replace(tiny, act=None), 640, paper)
    # the kit's CPU default (`yolov7 train` without --model): yolov7-tiny with every layer half as wide
    register_model("yolov7-tiny-cpu", scale_width(tiny, 0.5), 320, "yolov7lib CPU default")
    # ---- P6 models (cloud GPU): W6, E6 and D6 by compound scaling, E6E with E-ELAN -------------------
    w6 = ELANNet(
        reorg=True,
        stem=((64, 1),),
        stages=(
            ELAN(64, 64, 2, 2, 128),
            ELAN(128, 128, 2, 2, 256),
            ELAN(256, 256, 2, 2, 512),
            ELAN(384, 384, 2, 2, 768),
            ELAN(512, 512, 2, 2, 1024),
        ),
        down=(128, 256, 512, 768, 1024),
        down_type="Conv",
        spp=512,
        lateral=(384, 256, 128),
        top_down=(ELAN(384, 192, 4, 1, 384), ELAN(256, 128, 4, 1, 256), ELAN(128, 64, 4, 1, 128)),
        neck_down=(256, 384, 512),
        neck_down_type="Conv",
        bottom_up=(ELAN(256, 128, 4, 1, 256), ELAN(384, 192, 4, 1, 384), ELAN(512, 256, 4, 1, 512)),
        outputs=(256, 512, 768, 1024),
        output_conv="Conv",
        aux_outputs=(320, 640, 960, 1280),
        head="IAuxDetect",
        anchors=ANCHORS_P6,
    )
    register_model("yolov7-w6", w6, 1280, paper)
    e6 = replace(
        w6,
        stem=((80, 1),),
        stages=(
            ELAN(64, 64, 3, 2, 160),
            ELAN(128, 128, 3, 2, 320),
            ELAN(256, 256, 3, 2, 640),
            ELAN(384, 384, 3, 2, 960),
            ELAN(512, 512, 3, 2, 1280),
        ),
        down=(160, 320, 640, 960, 1280),
        down_type="DownC",
        spp=640,
        lateral=(480, 320, 160),
        top_down=(ELAN(384, 192, 6, 1, 480), ELAN(256, 128, 6, 1, 320), ELAN(128, 64, 6, 1, 160)),
        neck_down=(320, 480, 640),
        neck_down_type="DownC",
        bottom_up=(ELAN(256, 128, 6, 1, 320), ELAN(384, 192, 6, 1, 480), ELAN(512, 256, 6, 1, 640)),
        outputs=(320, 640, 960, 1280),
        aux_outputs=(320, 640, 960, 1280),
    )
    register_model("yolov7-e6", e6, 1280, paper)
    register_model(
        "yolov7-d6",
        replace(
            e6,
            stem=((96, 1),),
            stages=(
                ELAN(64, 64, 4, 2, 192),
                ELAN(128, 128, 4, 2, 384),
                ELAN(256, 256, 4, 2, 768),
                ELAN(384, 384, 4, 2, 1152),
                ELAN(512, 512, 4, 2, 1536),
            ),
            down=(192, 384, 768, 1152, 1536),
            spp=768,
            lateral=(576, 384, 192),
            top_down=(ELAN(384, 192, 8, 1, 576), ELAN(256, 128, 8, 1, 384), ELAN(128, 64, 8, 1, 192)),
            neck_down=(384, 576, 768),
            bottom_up=(ELAN(256, 128, 8, 1, 384), ELAN(384, 192, 8, 1, 576), ELAN(512, 256, 8, 1, 768)),
            outputs=(384, 768, 1152, 1536),
            aux_outputs=(384, 768, 1152, 1536),
        ),
        1280,
        paper,
    )
    register_model(
        "yolov7-e6e",
        replace(
            e6,
            stages=tuple(s.scaled(cardinality=2) for s in e6.stages),
            top_down=tuple(s.scaled(cardinality=2) for s in e6.top_down),
            bottom_up=tuple(s.scaled(cardinality=2) for s in e6.bottom_up),
            aux_partial=True,
        ),
        1280,
        paper,
    )
    _register_baselines()
    register_ablations()


def _register_baselines() -> None:
    """Baselines of Tables 1, 2 and 5 (the official implementation's cfg/baseline)."""
    source = "official cfg/baseline"
    yolor_csp = CSPNet(
        stem=(("Conv", (32, 3, 1)), ("Conv", (64, 3, 2)), ("Bottleneck", (64,))),
        stages=tuple(
            CSPStage(w, "BottleneckCSPC", n, w) for w, n in ((128, 2), (256, 8), (512, 8), (1024, 4))
        ),
        spp=512,
        lateral=(256, 128),
        neck_block="BottleneckCSPB",
        neck_n=2,
        neck_down=(256, 512),
        bottom_up=(256, 512),
        outputs=(256, 512, 1024),
    )
    register_model("yolor-csp", yolor_csp, 640, source)
    register_model("yolor-csp-x", replace(yolor_csp, depth_multiple=1.33, width_multiple=1.25), 640, source)
    register_model("yolov4-csp", replace(yolor_csp, head="Detect"), 640, source)
    yolor_p6 = CSPNet(
        stem=(("ReOrg", ()), ("Conv", (64, 3, 1))),
        stages=tuple(
            CSPStage(w, "BottleneckCSPA", n, w) for w, n in ((128, 3), (256, 7), (384, 7), (512, 3), (640, 3))
        ),
        spp=320,
        lateral=(256, 192, 128),
        neck_block="BottleneckCSPB",
        neck_n=3,
        neck_down=(192, 256, 320),
        bottom_up=(192, 256, 320),
        outputs=(256, 384, 512, 640),
        anchors=ANCHORS_P6,
    )
    register_model("yolor-p6", yolor_p6, 1280, source)
    yolor_w6 = replace(
        yolor_p6,
        stages=tuple(
            CSPStage(w, "BottleneckCSPA", n, w)
            for w, n in ((128, 3), (256, 7), (512, 7), (768, 3), (1024, 3))
        ),
        spp=512,
        lateral=(384, 256, 128),
        neck_down=(256, 384, 512),
        bottom_up=(256, 384, 512),
        outputs=(256, 512, 768, 1024),
    )
    register_model("yolor-w6", yolor_w6, 1280, source)
    yolor_e6 = replace(yolor_w6, down_type="DownC", width_multiple=1.25)
    register_model("yolor-e6", yolor_e6, 1280, source)
    register_model(
        "yolor-d6",
        replace(
            yolor_e6,
            stages=tuple(replace(s, n=n) for s, n in zip(yolor_e6.stages, (3, 15, 15, 7, 7), strict=True)),
        ),
        1280,
        source,
    )
    register_model("yolov3", lambda nc: yolov3_spec(False, "yolov3", nc), 640, source)
    register_model("yolov3-spp", lambda nc: yolov3_spec(True, "yolov3-spp", nc), 640, source)
    r50 = CSPNet(
        stem=(("Stem", (128,)),),
        stages=(
            CSPStage(None, "ResCSPC", 3, 128),
            CSPStage(256, "ResCSPC", 4, 256),
            CSPStage(512, "ResCSPC", 6, 512),
            CSPStage(1024, "ResCSPC", 3, 1024),
        ),
        spp=512,
        lateral=(256, 128),
        neck_block="ResCSPB",
        neck_n=2,
        neck_down=(256, 512),
        bottom_up=(256, 512),
        outputs=(256, 512, 1024),
    )
    register_model("r50-csp", r50, 640, source)
    register_model(
        "x50-csp",
        replace(
            r50,
            stages=tuple(replace(s, block="ResXCSPC") for s in r50.stages),
            neck_block="ResXCSPB",
        ),
        640,
        source,
    )
