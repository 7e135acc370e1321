"""Every loss direction against autograd on random logits, and the record (support) path against the full path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.api.registry import RegistryError
from harness.diagnostic.alignment import project_to_support
from harness.diagnostic.losses import (
    LOSSES,
    NodeDistributions,
    SupportView,
    jsd_rbar,
    kl_divergence,
    resolve_loss,
)
from harness.storage.records import LOSS_NAMES

VOCAB = 50
SEEDS = range(6)
BETAS = (0.1, 0.5, 0.9)


def _random_node(seed: int, vocab: int = VOCAB, scale: float | None = None):
    """Student logits (a leaf for autograd), teacher log-probs, a sampled token and an advantage."""
    gen = torch.Generator().manual_seed(seed)
    if scale is None:
        scale = 0.5 + 0.6 * (seed % 6)  # flat to peaked distributions as the seed grows
    z = (scale * torch.randn(vocab, generator=gen, dtype=torch.float64)).requires_grad_(True)
    logq = torch.log_softmax(scale * torch.randn(vocab, generator=gen, dtype=torch.float64), dim=0)
    y = int(torch.randint(vocab, (1,), generator=gen))
    advantage = float(torch.rand(1, generator=gen, dtype=torch.float64)) - 0.5
    return z, logq, y, advantage


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    return (logp.exp() * (logp - logq)).sum()


def _reference_loss(name: str, logp: torch.Tensor, logq: torch.Tensor, y: int, adv: float, beta: float):
    """The scalar losses of the METHOD table, written independently of harness.diagnostic.losses."""
    if name == "rkl":
        return _kl(logp, logq)
    if name == "fkl":
        return _kl(logq, logp)
    if name == "jsd":
        logm = torch.log((1 - beta) * logp.exp() + beta * logq.exp())  # M depends on p: autograd sees it
        return beta * _kl(logq, logm) + (1 - beta) * _kl(logp, logm)
    if name == "sampled":
        return (logp[y] - logq[y]).detach() * logp[y]  # gradient l_y * grad log p_y
    if name == "grpo":
        return -adv * logp[y]
    raise AssertionError(name)


def _loss(name: str, beta: float):
    return resolve_loss(name, beta=beta) if name == "jsd" else resolve_loss(name)


CASES = [(name, 0.5) for name in LOSS_NAMES] + [("jsd", b) for b in BETAS if b != 0.5]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name,beta", CASES)
def test_full_direction_is_minus_autograd_gradient(name: str, beta: float, seed: int) -> None:
    z, logq, y, adv = _random_node(seed)
    logp = torch.log_softmax(z, dim=0)
    _reference_loss(name, logp, logq, y, adv, beta).backward()
    d = _loss(name, beta).full_direction(NodeDistributions(logp.detach(), logq, y, adv))
    assert d.dtype == torch.float64 and d.shape == (VOCAB,)
    torch.testing.assert_close(d, -z.grad, rtol=1e-9, atol=1e-14)
    assert abs(float(d.sum())) < 1e-12  # the identity support_direction's tail relies on


def _support_case(seed: int, vocab: int = VOCAB, scale: float | None = None):
    """A node plus a random support that contains the sampled token at a random position."""
    z, logq, y, adv = _random_node(seed, vocab, scale)
    logp = torch.log_softmax(z.detach(), dim=0)
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, vocab))
    others = [int(t) for t in rng.permutation(vocab) if t != y][: size - 1]
    ids = others.copy()
    ids.insert(int(rng.integers(0, size)), y)
    return logp, logq, y, adv, ids


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("name,beta", CASES)
def test_support_direction_matches_projection_of_full(name: str, beta: float, seed: int) -> None:
    logp, logq, y, adv, ids = _support_case(seed)
    loss = _loss(name, beta)
    view = SupportView(
        student_logprobs=logp[ids].numpy(),
        teacher_logprobs=logq[ids].numpy(),
        sampled_index=ids.index(y),
        kl_student_teacher=kl_divergence(logp, logq),
        jsd_rbar=jsd_rbar(logp, logq, beta),
        advantage=adv,
    )
    on_support = loss.support_direction(view)
    expected = project_to_support(loss.full_direction(NodeDistributions(logp, logq, y, adv)), ids)
    assert on_support.dtype == np.float64 and on_support.shape == (len(ids) + 1,)
    np.testing.assert_allclose(on_support, expected, rtol=1e-9, atol=1e-13)
    assert on_support[-1] == pytest.approx(-on_support[:-1].sum(), abs=1e-15)


def test_support_direction_on_a_full_support_has_zero_tail() -> None:
    logp, logq, y, adv, _ = _support_case(0)
    view = SupportView(logp.numpy(), logq.numpy(), y, kl_divergence(logp, logq), jsd_rbar(logp, logq), adv)
    for name in LOSS_NAMES:
        d = resolve_loss(name).support_direction(view)
        assert abs(d[-1]) < 1e-12, name
        np.testing.assert_allclose(d[:-1], resolve_loss(name).full_direction(NodeDistributions(logp, logq, y, adv))
                                   .numpy(), rtol=1e-12, atol=1e-15)


def test_registry_holds_exactly_the_record_losses() -> None:
    assert set(LOSSES.names()) == set(LOSS_NAMES)
    for name in LOSS_NAMES:
        loss = resolve_loss(name)
        assert loss.name == name and loss.description
        assert loss.uses_teacher == (name != "grpo")


def test_unknown_loss_suggests_close_names() -> None:
    with pytest.raises(RegistryError, match="rkl"):
        resolve_loss("rkll")


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.1, 1.5])
def test_jsd_refuses_degenerate_beta(beta: float) -> None:
    with pytest.raises(ValueError, match="beta"):
        resolve_loss("jsd", beta=beta)


def test_grpo_needs_no_teacher_and_the_others_do() -> None:
    logp, _, y, adv, ids = _support_case(1)
    grpo = resolve_loss("grpo")
    d = grpo.full_direction(NodeDistributions(logp, None, y, adv))
    expected = -adv * logp.exp()
    expected[y] += adv
    torch.testing.assert_close(d, expected, rtol=1e-12, atol=0.0)
    view = SupportView(logp[ids].numpy(), None, ids.index(y), math.nan, math.nan, adv)
    np.testing.assert_allclose(grpo.support_direction(view), project_to_support(d, ids), atol=1e-14)
    for name in ("rkl", "fkl", "jsd", "sampled"):
        with pytest.raises(ValueError, match="teacher"):
            resolve_loss(name).full_direction(NodeDistributions(logp, None, y, adv))
        with pytest.raises(ValueError, match="teacher"):
            resolve_loss(name).support_direction(view)


def test_teacher_equal_to_student_gives_zero_distillation_directions() -> None:
    logp, _, y, adv, _ = _support_case(2)
    for name in ("rkl", "fkl", "jsd", "sampled"):
        d = resolve_loss(name).full_direction(NodeDistributions(logp, logp.clone(), y, adv))
        assert float(d.abs().max()) < 1e-15, name


def test_zero_probability_tokens_give_no_nan() -> None:
    logits = torch.randn(VOCAB, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    logits[:5] = -math.inf  # the student puts no mass on these tokens
    logp = torch.log_softmax(logits, dim=0)
    logq = torch.log_softmax(torch.randn(VOCAB, dtype=torch.float64), dim=0)
    for name in LOSS_NAMES:
        d = resolve_loss(name).full_direction(NodeDistributions(logp, logq, 7, 0.3))
        assert torch.isfinite(d).all(), name
        assert abs(float(d.sum())) < 1e-12, name
        if name != "fkl":  # fkl moves mass toward q wherever q > 0; the others are proportional to p
            assert float(d[:5].abs().max()) == 0.0, name
    assert math.isfinite(jsd_rbar(logp, logq)) and math.isfinite(kl_divergence(logp, logq))


def test_out_of_range_sampled_index_raises() -> None:
    logp, logq, _, adv, _ = _support_case(4)
    with pytest.raises(ValueError, match="out of range"):
        resolve_loss("grpo").full_direction(NodeDistributions(logp, logq, VOCAB, adv))
    view = SupportView(logp[:3].numpy(), logq[:3].numpy(), 3, 0.0, 0.0, adv)
    with pytest.raises(ValueError, match="out of range"):
        resolve_loss("sampled").support_direction(view)


def test_jsd_rbar_is_kl_to_the_mixture() -> None:
    logp, logq, *_ = _support_case(5)
    p, q = logp.exp().numpy(), logq.exp().numpy()
    for beta in BETAS:
        m = (1 - beta) * p + beta * q
        assert jsd_rbar(logp, logq, beta) == pytest.approx(float(np.sum(p * np.log(p / m))), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    vocab=st.integers(2, 40),
    scale=st.floats(0.1, 8.0),
    name=st.sampled_from(LOSS_NAMES),
)
def test_support_tail_is_minus_support_sum_and_matches_projection(
    seed: int, vocab: int, scale: float, name: str
) -> None:
    logp, logq, y, adv, ids = _support_case(seed, vocab, scale)
    loss = resolve_loss(name)
    view = SupportView(logp[ids].numpy(), logq[ids].numpy(), ids.index(y), kl_divergence(logp, logq),
                       jsd_rbar(logp, logq), adv)
    d = loss.support_direction(view)
    assert d[-1] == pytest.approx(-d[:-1].sum(), abs=1e-15)
    full = project_to_support(loss.full_direction(NodeDistributions(logp, logq, y, adv)), ids)
    np.testing.assert_allclose(d, full, rtol=1e-9, atol=1e-13)
