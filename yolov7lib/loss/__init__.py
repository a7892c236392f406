"""Label assignment (plain YOLOv5-style, SimOTA, lead guided, coarse-to-fine) and the YOLOv7 loss.

`build_loss(model, hyp)` returns the training loss; see `criterion` for the terms, `assigners` for the
lead/auxiliary label assigners of Section 4.2, `candidates` for the fine and coarse candidate rules,
`simota` for the batched SimOTA matching and `decoder` for the Table 7 auxiliary decoder constraint.
"""

from yolov7lib.loss.assigners import AUX_ASSIGNERS, AssignerConfig, Assignment, LabelAssigner
from yolov7lib.loss.candidates import COARSE_BIAS, FINE_BIAS, Candidates, find_candidates
from yolov7lib.loss.criterion import (
    HeadTerms,
    YOLOv7Loss,
    build_loss,
    level_balance,
    scaled_gains,
)
from yolov7lib.loss.simota import simota_match

__all__ = [
    "AUX_ASSIGNERS",
    "COARSE_BIAS",
    "FINE_BIAS",
    "AssignerConfig",
    "Assignment",
    "Candidates",
    "HeadTerms",
    "LabelAssigner",
    "YOLOv7Loss",
    "build_loss",
    "find_candidates",
    "level_balance",
    "scaled_gains",
    "simota_match",
]
