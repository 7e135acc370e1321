"""The per-token losses ``opd validate`` trains with, one per loss the diagnostic scores (METHOD, Predictive validity).

The protocol needs the loss trained to be the loss whose alignment the diagnostic compared, so each trainable name of
:data:`harness.diagnostic.losses.LOSSES` maps to the per-token objective whose logit gradient, negated, is exactly that loss's
descent direction ``d`` (``tests/harness/diagnostic/test_training_losses.py`` checks it against ``harness.diagnostic.losses`` with
autograd, over the full vocabulary and on the support + tail bucket the records store):

* ``rkl``, ``fkl``, ``jsd``: TRL's full-vocabulary self-distillation divergence
  (``trl.experimental.sdft.loss_utils.compute_full_logit_self_distillation_loss``, the ``distillation_mode=
  "full_logits"`` objective of TRL's SDFT/SDPO trainers) with ``distillation_alpha`` 1, 0 and ``beta``. TRL's alpha
  is METHOD's beta: ``M = (1 - alpha) p + alpha q`` and the loss ``alpha KL(q||M) + (1 - alpha) KL(p||M)``. The
  *full-vocabulary* mode is the one used: TRL's ``topk_logits`` mode with its tail bucket renormalises the divergence
  on the student's top-k, whose gradient is not the full-vocabulary direction the diagnostic projects on its support.
* ``sampled``: TRL's ``sampled_token`` objective (``compute_sampled_token_self_distillation_loss``:
  ``stopgrad(log p_y - log q_y) * log p_y``), gradient ``l_y (e_y - p)``.
* ``grpo`` (the teacher-free reference run): REINFORCE with the group baseline on the sampled token,
  ``-A log p_y`` (TRL's ``selective_log_softmax``); on-policy (one update per batch) GRPO's clipped ratio is 1, so
  its per-token gradient is this ``A (e_y - p)``. It is written out because TRL's GRPO loss lives inside its trainer.

TRL is imported inside the functions (the ``train`` extra): ``import harness`` and every report stay TRL-free.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.api.errors import ConfigError
from harness.storage.records import REFERENCE_LOSS

TRL_MISSING = ("`opd validate` trains with TRL's losses, which are not installed: pip install 'opd-harness[train]' "
               "(or pip install 'trl>=1.16').")


class TrainingLossError(ConfigError):
    """A loss that cannot be trained, or TRL missing; the message says what to do."""


@dataclass(frozen=True)
class TrainingLoss:
    """How one loss is trained: TRL's mode and alpha, and whether it needs the teacher's logits."""

    name: str
    trl_mode: str  # "full_logits" | "sampled_token" | "reinforce" (ours, the grpo reference)
    alpha: float  # TRL's distillation_alpha (1 = reverse KL); unused by reinforce
    uses_teacher: bool = True


def _distillation(name: str, mode: str, alpha: float) -> Callable[[float], TrainingLoss]:
    return lambda beta: TrainingLoss(name, mode, alpha if alpha >= 0 else beta)


_TRAINABLE: dict[str, Callable[[float], TrainingLoss]] = {
    "rkl": _distillation("rkl", "full_logits", 1.0),
    "fkl": _distillation("fkl", "full_logits", 0.0),
    "jsd": _distillation("jsd", "full_logits", -1.0),  # alpha = the run's jsd beta
    "sampled": _distillation("sampled", "sampled_token", 1.0),
    REFERENCE_LOSS: lambda beta: TrainingLoss(REFERENCE_LOSS, "reinforce", 0.0, uses_teacher=False),
}
DISTILLATION_LOSSES = tuple(name for name in _TRAINABLE if name != REFERENCE_LOSS)


def training_loss(name: str, beta: float = 0.5) -> TrainingLoss:
    """The trained form of a registered loss; a loss with no trained form is refused with what can be used."""
    from harness.diagnostic.losses import LOSSES

    if name == REFERENCE_LOSS:
        raise TrainingLossError(
            f"--loss {REFERENCE_LOSS} is the teacher-free reference, not a distillation loss: every validation "
            f"already trains a GRPO run beside the teachers. Pick the distillation loss to validate with --loss "
            f"(one of {', '.join(DISTILLATION_LOSSES)}; default rkl).")
    if name not in _TRAINABLE:
        known = f"{name!r} is a registered loss" if name in LOSSES else f"{name!r} is not a registered loss"
        raise TrainingLossError(
            f"--loss {name}: {known}, but `opd validate` has no trained form of it, so training could not follow the "
            f"direction the diagnostic scores. Trainable losses: {', '.join(DISTILLATION_LOSSES)} (TRL's "
            f"full-logits divergences and sampled-token objective); pick one of them with --loss.")
    if not 0.0 < beta < 1.0:
        raise TrainingLossError(f"--jsd-beta must lie strictly between 0 and 1, got {beta!r}.")
    return _TRAINABLE[name](beta)


def require_trl() -> None:
    """Refuse before any work when TRL is not installed."""
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        raise TrainingLossError(TRL_MISSING)


def per_token_loss(loss: TrainingLoss, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                   tokens: torch.Tensor, advantage: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Per-token objective [n] at the n response positions: ``student_logits`` [n, V] (with grad), ``teacher_logits``
    [n, V] (no grad; None for grpo), ``tokens`` [n] the sampled tokens, ``advantage`` a scalar or [n] (grpo)."""
    from trl.trainer.utils import selective_log_softmax

    if loss.trl_mode == "reinforce":
        return -torch.as_tensor(advantage, dtype=student_logits.dtype) * selective_log_softmax(student_logits, tokens)
    import warnings

    with warnings.catch_warnings():  # TRL warns on every import from trl.experimental; these two are pure functions
        warnings.simplefilter("ignore")
        from trl.experimental.sdft.loss_utils import (
            compute_full_logit_self_distillation_loss,
            compute_sampled_token_self_distillation_loss,
        )

    if teacher_logits is None:
        raise ValueError(f"loss {loss.name} needs the teacher's logits")
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if loss.trl_mode == "full_logits":
        return compute_full_logit_self_distillation_loss(student_logits, teacher_logits,
                                                         distillation_alpha=loss.alpha)
    return compute_sampled_token_self_distillation_loss(student_logits, teacher_logits, tokens,
                                                        distillation_alpha=loss.alpha)
