"""The loss ``opd validate`` trains is the loss the diagnostic scores: its per-token autograd gradient in logit space,
negated, equals ``harness.diagnostic.losses``' descent direction over the full vocabulary, and on the support + tail bucket the
records store (the same ``support_direction`` the alignment is computed from)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from harness.diagnostic.losses import LOSSES, NodeDistributions, SupportView, jsd_rbar, kl_divergence, resolve_loss
from harness.diagnostic.training_losses import DISTILLATION_LOSSES, TrainingLossError, per_token_loss, training_loss

pytestmark = pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs the train extra (TRL)")

VOCAB, POSITIONS = 40, 5
BETAS = (0.2, 0.5, 0.8)


def _batch(seed: int):
    gen = torch.Generator().manual_seed(seed)
    scale = 0.5 + seed % 4
    z = (scale * torch.randn(POSITIONS, VOCAB, generator=gen, dtype=torch.float64)).requires_grad_(True)
    teacher = scale * torch.randn(POSITIONS, VOCAB, generator=gen, dtype=torch.float64)
    tokens = torch.randint(VOCAB, (POSITIONS,), generator=gen)
    advantage = float(torch.rand(1, generator=gen, dtype=torch.float64)) - 0.5
    return z, teacher, tokens, advantage


def _trained_directions(name: str, beta: float, seed: int):
    """-(d loss / d z) at every position, from autograd through the trained per-token loss (summed over positions:
    each position's loss depends on its own logits only, so the rows are the per-token gradients)."""
    z, teacher, tokens, advantage = _batch(seed)
    loss = training_loss(name, beta)
    per_token = per_token_loss(loss, z, None if not loss.uses_teacher else teacher, tokens, advantage)
    assert per_token.shape == (POSITIONS,)
    (gradient,) = torch.autograd.grad(per_token.sum(), z)
    return -gradient, z.detach(), teacher, tokens, advantage


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", [*DISTILLATION_LOSSES, "grpo-reference"])
def test_trained_gradient_is_the_scored_direction(name, seed):
    for beta in (BETAS if name == "jsd" else (0.5,)):
        scored_name = "grpo" if name == "grpo-reference" else name
        if scored_name == "grpo":
            from harness.diagnostic.training_losses import _TRAINABLE  # the reference run's loss (refused as --loss)

            loss = _TRAINABLE["grpo"](beta)
            z, teacher, tokens, advantage = _batch(seed)
            per_token = per_token_loss(loss, z, None, tokens, advantage)
            (gradient,) = torch.autograd.grad(per_token.sum(), z)
            trained, z = -gradient, z.detach()
        else:
            trained, z, teacher, tokens, advantage = _trained_directions(scored_name, beta, seed)
        scored = resolve_loss(scored_name, **({"beta": beta} if scored_name == "jsd" else {}))
        logp, logq = torch.log_softmax(z, -1), torch.log_softmax(teacher, -1)
        for i in range(POSITIONS):
            node = NodeDistributions(logp[i], logq[i], int(tokens[i]), advantage)
            full = scored.full_direction(node)
            np.testing.assert_allclose(trained[i].numpy(), full.numpy(), rtol=1e-9, atol=1e-12)
            # on the support + tail bucket the alignment uses: the trained gradient summed outside C(u)
            support = sorted({int(tokens[i]), *torch.topk(logp[i], 4).indices.tolist()})
            outside = np.setdiff1d(np.arange(VOCAB), support)
            trained_support = np.append(trained[i].numpy()[support], trained[i].numpy()[outside].sum())
            view = SupportView(logp[i, support].numpy(), logq[i, support].numpy(), support.index(int(tokens[i])),
                               kl_divergence(logp[i], logq[i]), jsd_rbar(logp[i], logq[i], beta), advantage)
            np.testing.assert_allclose(trained_support, scored.support_direction(view), rtol=1e-9, atol=1e-12)


def test_an_independent_reverse_kl_has_the_same_gradient():
    """Written without TRL or harness.diagnostic.losses: KL(p||q) by hand, its autograd gradient against the trained one."""
    trained, z, teacher, _, _ = _trained_directions("rkl", 0.5, 7)
    z = z.clone().requires_grad_(True)
    logp, logq = torch.log_softmax(z, -1), torch.log_softmax(teacher, -1)
    (by_hand,) = torch.autograd.grad((logp.exp() * (logp - logq)).sum(), z)
    np.testing.assert_allclose(trained.numpy(), -by_hand.numpy(), rtol=1e-10, atol=1e-13)


def test_losses_without_a_trained_form_are_refused():
    with pytest.raises(TrainingLossError, match="teacher-free reference"):
        training_loss("grpo")
    with pytest.raises(TrainingLossError, match="not a registered loss"):
        training_loss("nope")
    from harness.storage.records import LOSS_NAMES

    # every loss the records score has a trained form (grpo's is the reference run's)
    assert set(DISTILLATION_LOSSES) | {"grpo"} == set(LOSS_NAMES) <= set(LOSSES.names())
