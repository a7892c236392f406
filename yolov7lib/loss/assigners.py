"""Label assigners of the lead and auxiliary heads (Section 4.2, Figure 5, Tables 6-8).

Lead head (always): fine candidates (centre cell + 2 nearest neighbours), matched by SimOTA on the lead
head's own predictions (`loss_ota: 1`), or all taken as positives (`loss_ota: 0`, plain YOLOv5-style).

Auxiliary head, chosen by the hyp key `aux_assign`:

- `independent` (Figure 5c, Table 6 "independent"): the auxiliary head is assigned like the lead head
  but from its own predictions: fine candidates, SimOTA on the auxiliary predictions decoded with the
  auxiliary decoder. The reference has no switch for this variant; this is the paper's description.
- `lead_guided` (Figure 5d): the lead head's assignment is used for both heads (no switch in the
  reference either: its training uses the next variant).
- `coarse_to_fine` (Figure 5e, the default and the reference's training): the lead head gets the fine
  labels above; the auxiliary head gets coarse labels, SimOTA on the *lead* predictions over the
  relaxed candidates (centre cell + 4 neighbours). The coarse candidates contain the fine ones, and so
  do the plain coarse positives; the SimOTA coarse positives need not contain the fine positives: a
  target takes its k cheapest among more candidates, where a far coarse cell can displace a fine one
  (as in the reference; `tests/test_assign.py` has an example).

What a label carries: the positive cells and the target each is matched to. The objectness soft label
of a positive is the IoU between that target and the box the trained head itself predicts there (`gr`),
as in the reference; `aux_constraint` picks the auxiliary decoder (see `decoder.py`, Table 7).

SimOTA's dynamic k sums the `ota_topk` largest IoUs: by default 10 for a model without auxiliary head
(the reference's ComputeLossOTA) and 20 for every assignment of a model with one (ComputeLossAuxOTA).

With `loss_ota: 0` nothing depends on predictions, so `independent` and `lead_guided` coincide (fine
candidates for both heads) and `coarse_to_fine` gives the auxiliary head all coarse candidates.

The partial auxiliary head of Table 8 is a matter of where the auxiliary maps come from in the network
(E6E attaches them before the cardinality merge); the assigners only need auxiliary maps of the same
shapes as the lead maps.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from yolov7lib.loss.candidates import COARSE_BIAS, FINE_BIAS, Candidates, find_candidate_sets, to_host
from yolov7lib.loss.simota import simota_match_sets

AUX_ASSIGNERS = ("independent", "lead_guided", "coarse_to_fine")
TOPK_LEAD_ONLY = 10  # reference ComputeLossOTA
TOPK_WITH_AUX = 20  # reference ComputeLossAuxOTA


@dataclass(frozen=True)
class Assignment:
    """The positives of one head: over all candidates, whether each is positive and its target."""

    candidates: Candidates
    positive: torch.Tensor
    matched: torch.Tensor

    def positives(self) -> list[tuple[torch.Tensor, ...]]:
        """Per level, (image, anchor, gj, gi, target) of the positives, ordered by image, then as the
        candidates are enumerated (offset, anchor, target) - the reference's order.

        Reads data back to the host: for tests and inspection, not for the training step.
        """
        out = []
        cand = self.candidates
        for s in cand.blocks:
            keep = self.positive[s]
            fields = [cand.image[s], cand.anchor[s], cand.gj[s], cand.gi[s], self.matched[s]]
            fields = [f[keep] for f in fields]
            order = torch.sort(fields[0], stable=True).indices
            out.append(tuple(f[order] for f in fields))
        return out

    def compacted(self) -> Assignment:
        """The same labels with the non-positive candidates dropped (order kept).

        Reads the positives back to the host: free when the tensors live on the host, a
        synchronisation on an accelerator, where the loss therefore keeps the masked form.
        """
        cand = self.candidates
        keep = torch.nonzero(self.positive).flatten()
        bounds = torch.tensor([0, *(s.stop for s in cand.blocks)], device=keep.device)
        counts = to_host(torch.searchsorted(keep, bounds))  # positives before each block's end
        blocks = tuple(slice(a, b) for a, b in itertools.pairwise(counts))
        kept = replace(cand, blocks=blocks, fields=cand.fields[keep])
        return Assignment(kept, torch.ones_like(keep, dtype=torch.bool), self.matched[keep])

    @staticmethod
    def concat(labels: Sequence[Assignment]) -> Assignment:
        """Several label sets of the same targets as one list: their blocks one after the other."""
        if len(labels) == 1:
            return labels[0]
        blocks, start = [], 0
        for lab in labels:
            blocks += [slice(start + s.start, start + s.stop) for s in lab.candidates.blocks]
            start += lab.candidates.size
        first = labels[0].candidates
        cand = replace(
            first,
            blocks=tuple(blocks),
            fields=torch.cat([lab.candidates.fields for lab in labels]),
            max_per_image=max(lab.candidates.max_per_image for lab in labels),
        )
        positive = torch.cat([lab.positive for lab in labels])
        return Assignment(cand, positive, torch.cat([lab.matched for lab in labels]))


@dataclass(frozen=True)
class AssignerConfig:
    """Assignment settings read from the hyperparameters; see `from_hyp` for the keys."""

    simota: bool
    anchor_t: float
    topk: int
    aux_assign: str
    aux_constrained: bool

    @classmethod
    def from_hyp(cls, hyp: Mapping[str, Any], has_aux: bool) -> AssignerConfig:
        """Keys: loss_ota (0/1), anchor_t, ota_topk (0 = 10 without and 20 with an auxiliary head, the
        reference's values), aux_assign (one of AUX_ASSIGNERS), aux_constraint (0/1)."""
        simota = _switch(hyp, "loss_ota", "plain assignment", "SimOTA")
        aux_constrained = _switch(hyp, "aux_constraint", "unbounded auxiliary decoder", "bounded")
        aux_assign = str(hyp["aux_assign"])
        if aux_assign not in AUX_ASSIGNERS:
            raise ValueError(f"aux_assign must be one of {', '.join(AUX_ASSIGNERS)}, got {aux_assign!r}")
        topk = int(hyp["ota_topk"])
        if topk < 0:
            raise ValueError(f"ota_topk must be >= 0 (0 = the reference's choice), got {topk}")
        if topk == 0:
            topk = TOPK_WITH_AUX if has_aux else TOPK_LEAD_ONLY
        return cls(
            simota=simota,
            anchor_t=float(hyp["anchor_t"]),
            topk=topk,
            aux_assign=aux_assign,
            aux_constrained=aux_constrained,
        )


def _switch(hyp: Mapping[str, Any], key: str, off: str, on: str) -> bool:
    """A 0/1 hyperparameter (false/true too); any other value is refused, not rounded to one."""
    value = hyp[key]
    if isinstance(value, str) or value not in (0, 1):
        raise ValueError(f"{key} must be 0 ({off}) or 1 ({on}), got {value!r}")
    return bool(value)


class LabelAssigner:
    """Assigns targets to the lead head's cells and, given auxiliary maps, to the auxiliary head's.

    `strides` (nl floats) and `anchors` (nl, na, 2, grid units) are the detection head's. Label sets
    that share their inputs are computed together: the fine and coarse candidates of the
    coarse-to-fine assigner come from one candidate search, and both are matched by one SimOTA pass
    on the lead predictions.
    """

    def __init__(self, strides: Sequence[float], anchors: torch.Tensor, config: AssignerConfig) -> None:
        self.strides, self.anchors, self.config = list(strides), anchors, config

    def _candidates(self, biases: Sequence[float], targets: torch.Tensor, maps: list[torch.Tensor]):
        grids = [tuple(p.shape[2:4]) for p in maps]
        anchors = self.anchors.to(targets.device)
        return find_candidate_sets(targets, grids, anchors, self.config.anchor_t, biases, maps[0].shape[0])

    def _match(
        self,
        cands: Sequence[Candidates],
        guide: list[torch.Tensor],
        targets: torch.Tensor,
        img_hw: tuple[int, int],
        constrained: bool,
    ) -> list[Assignment]:
        """Labels of each candidate set, all matched on the predictions `guide` (SimOTA), or every
        candidate a positive of its proposing target (plain assignment)."""
        if not self.config.simota:
            return [Assignment(c, torch.ones_like(c.target, dtype=torch.bool), c.target) for c in cands]
        anchors = self.anchors.to(targets.device)
        matches = simota_match_sets(
            cands, guide, targets, img_hw, self.strides, anchors, self.config.topk, constrained
        )
        return [Assignment(c, *match) for c, match in zip(cands, matches, strict=True)]

    def __call__(
        self,
        lead: list[torch.Tensor],
        targets: torch.Tensor,
        img_hw: tuple[int, int],
        aux: list[torch.Tensor] | None = None,
    ) -> tuple[Assignment, Assignment | None]:
        """Labels of the lead head and, when `aux` maps are given, of the auxiliary head."""
        cfg = self.config
        if aux is None or cfg.aux_assign != "coarse_to_fine":
            cands = self._candidates([FINE_BIAS], targets, lead)
            (fine,) = self._match(cands, lead, targets, img_hw, constrained=True)
            if aux is None:
                return fine, None
            if cfg.aux_assign == "lead_guided" or not cfg.simota:  # the independent plain labels are fine's
                return fine, fine
            return fine, self._match(cands, aux, targets, img_hw, cfg.aux_constrained)[0]  # independent
        cands = self._candidates([FINE_BIAS, COARSE_BIAS], targets, lead)
        fine, coarse = self._match(cands, lead, targets, img_hw, constrained=True)
        return fine, coarse
