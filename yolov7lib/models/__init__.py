"""Every YOLOv7 architecture, exactly (paper Sections 3-4, Tables 1, 2, 3, 9).

- layers (:mod:`.layers`, :mod:`.csp`), heads (:mod:`.heads`);
- blocks as builder functions (:mod:`.blocks`: ELAN, E-ELAN, MP transition, SPPCSPC) and
  architectures as code (:mod:`.architectures`), registered by name (:mod:`.registry`);
- compound scaling for concatenation-based models (:mod:`.scaling`);
- the spec / cfg format and its graph builder (:mod:`.spec`, :mod:`.graph`);
- re-parameterization (:mod:`.reparam`), parameter and FLOP counts (:mod:`.info`);
- official checkpoints through a restricted unpickler (:mod:`.official`).
"""

from yolov7lib.models.architectures import CSPNet, CSPStage, ELANNet
from yolov7lib.models.blocks import ELAN
from yolov7lib.models.graph import Model
from yolov7lib.models.info import ModelInfo, count_params, describe_model, model_info
from yolov7lib.models.official import UnsafeCheckpointError, load_official
from yolov7lib.models.registry import create_model, list_models, model_spec, register_model
from yolov7lib.models.reparam import randomize_batchnorm, reparameterize
from yolov7lib.models.scaling import compound_scale, scale_depth, scale_width, stack_neck, v7x_light
from yolov7lib.models.spec import SpecBuilder, deploy_spec, dump_cfg, load_cfg

__all__ = [
    "ELAN",
    "CSPNet",
    "CSPStage",
    "ELANNet",
    "Model",
    "ModelInfo",
    "SpecBuilder",
    "UnsafeCheckpointError",
    "compound_scale",
    "count_params",
    "create_model",
    "deploy_spec",
    "describe_model",
    "dump_cfg",
    "list_models",
    "load_cfg",
    "load_official",
    "model_info",
    "model_spec",
    "randomize_batchnorm",
    "register_model",
    "reparameterize",
    "scale_depth",
    "scale_width",
    "stack_neck",
    "v7x_light",
]
