"""Combination of terms: weights, labels, config parsing, gradients and student isolation."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.distill import (
    CombinedStrategy,
    ModelOutputs,
    build_strategy,
    create_strategy,
    list_strategies,
)
from kdbench.errors import ConfigError
from kdbench.models import create_model

IMAGE_SIZE = 32

# Every built-in strategy with pairs that fit a tiny U-Net teacher (enc1..enc2, bottleneck,
# dec1..dec2) and the CFPNet-M student (enc1, enc2, bottleneck, dec1..dec3).
TERMS = {
    "logit": {"temperature": 4.0},
    "feature": {"pairs": [["enc2", "enc2"], ["bottleneck", "bottleneck"]]},
    "attention": {"pairs": [["enc2", "enc1"]]},
    "cwd": {"on": "both", "pairs": [["dec1", "dec1"]]},
    "pairwise": {"pairs": [["enc2", "enc2"]], "pool_size": 2},
}


def tiny_teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("unet", num_classes=3, base_width=4, depth=2)


def tiny_student() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_model(
        "cfpnet_m",
        num_classes=3,
        stem_width=16,
        stage_widths=(16, 32),
        stage1_dilations=(2,),
        stage2_dilations=(4,),
    )


def strategy_for(student, teacher, terms) -> CombinedStrategy:
    strategy = build_strategy(terms)
    strategy.setup(student.stage_channels(IMAGE_SIZE), teacher.stage_channels(IMAGE_SIZE))
    return strategy


def kd_step(strategy, student, teacher, images):
    """Student and teacher forward with autograd on for both, as a careless trainer might."""
    logits, features = student.forward_stages(images, strategy.student_stages())
    t_logits, t_features = teacher.forward_stages(images, strategy.teacher_stages())
    return strategy.loss(
        ModelOutputs(logits, features),
        ModelOutputs(t_logits, t_features),
        torch.zeros(len(images), IMAGE_SIZE, IMAGE_SIZE, dtype=torch.long),
    )


def test_terms_cover_every_builtin_strategy():
    assert sorted(TERMS) == sorted(set(list_strategies()) - {"none"})


# --- labels and weights ------------------------------------------------------------------------


def test_build_strategy_label():
    strategy = build_strategy(
        [
            {"kind": "logit", "weight": 1.0, "temperature": 4.0},
            {"kind": "attention", "weight": 0.5, "pairs": [["enc3", "enc2"]]},
        ]
    )
    assert strategy.describe() == "logit(T=4)+0.5*attention"


def test_build_strategy_empty_label_none():
    assert build_strategy([]).describe() == "none"


def test_build_strategy_none_is_empty():
    strategy = build_strategy([{"kind": "none"}])
    assert len(strategy.terms) == 0
    assert strategy.needs_teacher is False


def test_empty_combination_loss_zero():
    student = ModelOutputs(torch.ones(1, 2, 4, 4))
    assert build_strategy([]).loss(student, None, torch.zeros(1, 4, 4)).item() == 0.0


def test_combination_weighted_sum():
    student = ModelOutputs(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    teacher = ModelOutputs(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)))
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    logit, cwd = create_strategy("logit", temperature=2.0), create_strategy("cwd")
    strategy = CombinedStrategy([(1.5, logit, "kd"), (0.25, cwd, "cwd")])

    losses = strategy.losses(student, teacher, target)
    expected = 1.5 * logit.loss(student, teacher, target) + 0.25 * cwd.loss(
        student, teacher, target
    )
    assert list(losses) == ["kd", "cwd"]
    assert math.isclose(strategy.loss(student, teacher, target).item(), expected.item())
    assert math.isclose(strategy.weighted_sum(losses).item(), expected.item())
    assert math.isclose(strategy(student, teacher, target).item(), expected.item())


def test_combination_stage_union():
    strategy = build_strategy(
        [
            {"kind": "attention", "pairs": [["enc3", "enc2"], ["enc4", "enc3"]]},
            {"kind": "feature", "pairs": {"enc3": "enc2", "dec1": "dec1"}},
        ]
    )
    assert strategy.teacher_stages() == ["enc3", "enc4", "dec1"]
    assert strategy.student_stages() == ["enc2", "enc3", "dec1"]


def test_combination_needs_teacher_logits():
    features_only = build_strategy([{"kind": "attention", "pairs": [["a", "b"]]}])
    with_logits = build_strategy([{"kind": "attention", "pairs": [["a", "b"]]}, {"kind": "logit"}])
    assert features_only.needs_teacher_logits() is False
    assert with_logits.needs_teacher_logits() is True


def test_term_records_for_cell_json():
    strategy = build_strategy([{"kind": "logit", "weight": 2, "options": {"temperature": 3}}])
    expected = [{"kind": "logit", "weight": 2.0, "options": {"temperature": 3.0}}]
    assert strategy.term_records() == expected


# --- config errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ([{"weight": 1.0}], "term 0 is missing key 'kind'"),
        ([{"kind": "logit"}, {"kind": "atention"}], "term 1, key 'kind'.*attention"),
        ([{"kind": "logit", "weight": -1}], "term 0, key 'weight'"),
        ([{"kind": "logit", "weight": "1"}], "term 0, key 'weight'"),
        ([{"kind": "logit"}, {"kind": "logit", "tau": 2}], r"term 1 \(logit\).*'tau'"),
        ([{"kind": "logit", "options": 3}], "term 0, key 'options'"),
        ([{"kind": "logit", "temperature": 2, "options": {"temperature": 3}}], "both directly"),
        ([{"kind": "logit"}, {"kind": "none"}], "term 1, key 'kind'.*cannot be combined"),
        ([{"kind": "logit"}, {"kind": "logit"}], "terms 0 and 1 have the same label"),
        ([{"kind": "feature"}], r"term 0 \(feature\).*needs option 'pairs'"),
        ({"kind": "logit"}, "must be a list"),
        (["logit"], "term 0 must be a table"),
    ],
)
def test_build_strategy_config_error(terms, message):
    with pytest.raises(ConfigError, match=message):
        build_strategy(terms)


# --- gradients and student isolation -------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TERMS))
def test_gradients_reach_student_and_adapters_not_teacher(kind):
    teacher, student = tiny_teacher(), tiny_student()
    strategy = strategy_for(student, teacher, [{"kind": kind, **TERMS[kind]}])
    images = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))

    kd_step(strategy, student, teacher, images).backward()

    student_grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert student_grads and any(g.abs().sum() > 0 for g in student_grads)
    assert all(p.grad is not None for p in strategy.parameters())
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("kind", sorted(TERMS))
def test_student_unchanged_by_setup_and_training(kind):
    teacher, student = tiny_teacher(), tiny_student()
    keys_before = list(student.state_dict())
    count_before = sum(p.numel() for p in student.parameters())

    strategy = strategy_for(student, teacher, [{"kind": kind, **TERMS[kind]}])
    params = list(student.parameters()) + list(strategy.parameters())
    optimizer = torch.optim.SGD(params, lr=0.01)
    images = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        optimizer.zero_grad()
        kd_step(strategy, student, teacher, images).backward()
        optimizer.step()

    assert list(student.state_dict()) == keys_before
    assert sum(p.numel() for p in student.parameters()) == count_before
    assert not any(name.startswith("adapters") for name in student.state_dict())


def test_feature_adapters_live_in_strategy():
    teacher, student = tiny_teacher(), tiny_student()
    strategy = strategy_for(student, teacher, [{"kind": "feature", **TERMS["feature"]}])
    adapter_params = sum(p.numel() for p in strategy.parameters())
    # enc2: 33 -> 8 channels, bottleneck: 65 -> 16 channels, 1x1 convolutions with bias.
    assert adapter_params == (33 * 8 + 8) + (65 * 16 + 16)
