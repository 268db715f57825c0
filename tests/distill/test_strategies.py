"""Known answers of every strategy on tiny hand-built tensors, against loops written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdbench.distill import ModelOutputs, create_strategy, list_strategies, strategy_options
from kdbench.errors import ConfigError, UnknownNameError
from tests.distill.helpers import bilinear_resize, kl, softmax

TARGET = torch.zeros(2, 4, 4, dtype=torch.long)  # no strategy reads the label map


def outputs(logits=None, **features) -> ModelOutputs:
    """ModelOutputs from NumPy arrays (float64 precision is not needed: float32 throughout)."""
    if logits is None:
        logits = np.zeros((2, 3, 4, 4))
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return ModelOutputs(as_tensor(logits), {k: as_tensor(v) for k, v in features.items()})


def random(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def close(value: torch.Tensor, expected: float) -> bool:
    return math.isclose(value.item(), expected, rel_tol=1e-5, abs_tol=1e-6)


# --- registry ---------------------------------------------------------------------------------


def test_registry_lists_builtin_strategies():
    expected = ["attention", "cwd", "feature", "logit", "none", "pairwise"]
    assert list_strategies() == expected


def test_registry_wildcard():
    assert list_strategies("p*") == ["pairwise"]


def test_create_strategy_unknown_option_raises_config_error():
    with pytest.raises(ConfigError, match="no option 'temprature'.*temperature"):
        create_strategy("logit", temprature=2.0)


def test_create_strategy_unknown_option_lists_accepted_options():
    with pytest.raises(ConfigError, match="Its options are: pairs, p, mode"):
        create_strategy("attention", pairs=[["a", "b"]], beta=1000)


def test_create_strategy_unknown_name_raises():
    with pytest.raises(UnknownNameError, match="attention"):
        create_strategy("atention")


def test_strategy_options_of_cwd():
    assert strategy_options("cwd") == ["temperature", "on", "pairs"]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("logit", {"temperature": 0}, "temperature' must be > 0"),
        ("logit", {"temperature": "4"}, "must be a number"),
        ("feature", {}, "needs option 'pairs'"),
        ("feature", {"pairs": [["enc3"]]}, "two stage names"),
        ("feature", {"pairs": [], "distance": "l2"}, "'pairs' is empty"),
        ("feature", {"pairs": [["a", "b"]], "distance": "l1"}, "'l2', 'smooth_l1'"),
        ("attention", {"pairs": [["a", "b"], ["a", "b"]]}, "twice"),
        ("attention", {"pairs": [["a", "b"]], "mode": "torchdistill"}, "'paper', 'code'"),
        ("attention", {"pairs": [["a", "b"]], "mode": "code", "p": 1.5}, "p must be an integer"),
        ("cwd", {"on": "features"}, "needs option 'pairs'"),
        ("cwd", {"pairs": [["a", "b"]]}, "only read with on"),
        ("pairwise", {"pairs": [["a", "b"]], "pool_size": 2, "node_scale": 0.5}, "not both"),
        ("pairwise", {"pairs": [["a", "b"]], "node_scale": 1.5}, r"\(0, 1\]"),
        ("pairwise", {"pairs": [["a", "b"]], "pool_size": 0}, "integer >= 1"),
    ],
)
def test_create_strategy_invalid_value_raises(name, options, message):
    with pytest.raises(ConfigError, match=message):
        create_strategy(name, **options)


def test_pairs_accepts_dict():
    strategy = create_strategy("attention", pairs={"enc3": "enc2", "enc4": "enc3"})
    assert strategy.pairs == [("enc3", "enc2"), ("enc4", "enc3")]


def test_setup_missing_stage_names_model_stages():
    strategy = create_strategy("feature", pairs=[["enc9", "enc2"]])
    with pytest.raises(ConfigError, match="teacher has no stage 'enc9'.*enc1"):
        strategy.setup({"enc2": 4}, {"enc1": 4, "enc2": 8})


# --- none -------------------------------------------------------------------------------------


def test_none_needs_no_teacher():
    assert create_strategy("none").needs_teacher is False


def test_none_loss_is_zero():
    loss = create_strategy("none").loss(outputs(random(2, 3, 4, 4)), None, TARGET)
    assert loss.item() == 0.0


# --- logit ------------------------------------------------------------------------------------


def reference_logit_kd(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    batch, _, height, width = student.shape
    total = 0.0
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                p_teacher = softmax(teacher[b, :, i, j] / temperature)
                p_student = softmax(student[b, :, i, j] / temperature)
                total += kl(p_teacher, p_student)
    return total / (batch * height * width) * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logit_matches_reference(temperature):
    student, teacher = random(2, 3, 4, 4, seed=1), random(2, 3, 4, 4, seed=2)
    strategy = create_strategy("logit", temperature=temperature)
    loss = strategy.loss(outputs(student), outputs(teacher), TARGET)
    assert close(loss, reference_logit_kd(student, teacher, temperature))


def test_logit_identical_outputs_zero():
    logits = random(2, 3, 4, 4, seed=3)
    loss = create_strategy("logit").loss(outputs(logits), outputs(logits), TARGET)
    assert abs(loss.item()) < 1e-6


def test_logit_t_squared_scaling():
    # At high temperature KL(p_T || p_S) shrinks like 1/T**2, so T**2 * KL tends to a constant:
    # doubling T from 20 to 40 changes the loss by well under 1 %, where an unscaled KL would
    # drop by a factor of 4.
    student, teacher = random(2, 3, 4, 4, seed=4), random(2, 3, 4, 4, seed=5)
    loss_20 = create_strategy("logit", temperature=20.0).loss(
        outputs(student), outputs(teacher), TARGET
    )
    loss_40 = create_strategy("logit", temperature=40.0).loss(
        outputs(student), outputs(teacher), TARGET
    )
    assert loss_40.item() / loss_20.item() == pytest.approx(1.0, abs=0.01)


def test_logit_loss_is_t_squared_times_kl():
    student, teacher = random(2, 3, 4, 4, seed=6), random(2, 3, 4, 4, seed=7)
    loss = create_strategy("logit", temperature=3.0).loss(
        outputs(student), outputs(teacher), TARGET
    )
    unscaled = reference_logit_kd(student, teacher, 3.0) / 9.0
    assert close(loss / 9.0, unscaled)


def test_logit_resizes_student_logits_to_teacher_size():
    student, teacher = random(2, 3, 2, 2, seed=8), random(2, 3, 4, 4, seed=9)
    loss = create_strategy("logit", temperature=2.0).loss(
        outputs(student), outputs(teacher), TARGET
    )
    expected = reference_logit_kd(bilinear_resize(student, 4, 4), teacher, 2.0)
    assert close(loss, expected)


# --- feature ----------------------------------------------------------------------------------


def feature_strategy(distance: str, weight: np.ndarray, bias: np.ndarray):
    strategy = create_strategy("feature", pairs=[["t", "s"]], distance=distance)
    c_out, c_in = weight.shape
    strategy.setup({"s": c_in}, {"t": c_out})
    adapter = strategy.adapters["t__s"]
    with torch.no_grad():
        adapter.weight.copy_(torch.tensor(weight, dtype=torch.float32).view(c_out, c_in, 1, 1))
        adapter.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return strategy


def apply_adapter(student: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    batch, _, height, width = student.shape
    out = np.zeros((batch, weight.shape[0], height, width))
    for b in range(batch):
        for o in range(weight.shape[0]):
            out[b, o] = bias[o] + sum(weight[o, c] * student[b, c] for c in range(weight.shape[1]))
    return out


def smooth_l1(diff: np.ndarray) -> np.ndarray:
    return np.where(np.abs(diff) < 1.0, 0.5 * diff**2, np.abs(diff) - 0.5)


@pytest.mark.parametrize("distance", ["l2", "smooth_l1"])
def test_feature_matches_reference(distance):
    student, teacher = random(2, 3, 4, 4, seed=10), 2 * random(2, 5, 4, 4, seed=11)
    weight, bias = random(5, 3, seed=12), random(5, seed=13)
    strategy = feature_strategy(distance, weight, bias)
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)

    diff = apply_adapter(student, weight, bias) - teacher
    expected = np.mean(diff**2) if distance == "l2" else np.mean(smooth_l1(diff))
    assert close(loss, expected)


def test_feature_identity_adapter_identical_outputs_zero():
    features = random(2, 3, 4, 4, seed=14)
    strategy = feature_strategy("l2", np.eye(3), np.zeros(3))
    loss = strategy.loss(outputs(s=features), outputs(t=features), TARGET)
    assert abs(loss.item()) < 1e-10


def test_feature_resizes_student_map_to_teacher_size():
    student, teacher = random(2, 3, 2, 2, seed=15), random(2, 3, 4, 4, seed=16)
    weight, bias = random(3, 3, seed=17), random(3, seed=18)
    strategy = feature_strategy("l2", weight, bias)
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)

    regressed = bilinear_resize(apply_adapter(student, weight, bias), 4, 4)
    assert close(loss, np.mean((regressed - teacher) ** 2))


def test_feature_sums_over_pairs():
    a_student, a_teacher = random(2, 2, 4, 4, seed=19), random(2, 2, 4, 4, seed=20)
    b_student, b_teacher = random(2, 2, 2, 2, seed=21), random(2, 2, 2, 2, seed=22)
    strategy = create_strategy("feature", pairs=[["ta", "sa"], ["tb", "sb"]])
    strategy.setup({"sa": 2, "sb": 2}, {"ta": 2, "tb": 2})
    for adapter in strategy.adapters.values():
        with torch.no_grad():
            adapter.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            adapter.bias.zero_()
    loss = strategy.loss(
        outputs(sa=a_student, sb=b_student), outputs(ta=a_teacher, tb=b_teacher), TARGET
    )
    expected = np.mean((a_student - a_teacher) ** 2) + np.mean((b_student - b_teacher) ** 2)
    assert close(loss, expected)


# --- attention --------------------------------------------------------------------------------


def reference_attention(student: np.ndarray, teacher: np.ndarray, p: float, mode: str) -> float:
    batch = student.shape[0]

    def attention(maps: np.ndarray, b: int) -> np.ndarray:
        if mode == "paper":
            q = sum(np.abs(maps[b, c]) ** p for c in range(maps.shape[1])).reshape(-1)
        else:
            q = (sum(maps[b, c] ** p for c in range(maps.shape[1])) / maps.shape[1]).reshape(-1)
        return q / math.sqrt(sum(v * v for v in q))

    if mode == "paper":
        norms = [
            np.sqrt(np.sum((attention(student, b) - attention(teacher, b)) ** 2))
            for b in range(batch)
        ]
        return sum(norms) / batch
    squares = [(attention(student, b) - attention(teacher, b)) ** 2 for b in range(batch)]
    return float(np.concatenate(squares).mean())


@pytest.mark.parametrize("mode", ["paper", "code"])
@pytest.mark.parametrize("p", [2.0, 3.0])
def test_attention_matches_reference(mode, p):
    student, teacher = random(2, 3, 4, 4, seed=23), random(2, 6, 4, 4, seed=24)
    strategy = create_strategy("attention", pairs=[["t", "s"]], p=p, mode=mode)
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)
    assert close(loss, reference_attention(student, teacher, p, mode))


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_attention_identical_outputs_zero(mode):
    features = random(2, 3, 4, 4, seed=25)
    strategy = create_strategy("attention", pairs=[["t", "s"]], mode=mode)
    loss = strategy.loss(outputs(s=features), outputs(t=features), TARGET)
    assert abs(loss.item()) < 1e-6


def test_attention_scaled_student_zero():
    features = random(2, 3, 4, 4, seed=26)
    strategy = create_strategy("attention", pairs=[["t", "s"]])
    loss = strategy.loss(outputs(s=3.0 * features), outputs(t=features), TARGET)
    assert abs(loss.item()) < 1e-6


def test_attention_resizes_student_map_to_teacher_size():
    student, teacher = random(2, 3, 2, 2, seed=27), random(2, 4, 4, 4, seed=28)
    strategy = create_strategy("attention", pairs=[["t", "s"]])
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)
    expected = reference_attention(bilinear_resize(student, 4, 4), teacher, 2.0, "paper")
    assert close(loss, expected)


def test_attention_identical_outputs_gradient_finite():
    features = torch.tensor(random(2, 3, 4, 4, seed=29), dtype=torch.float32)
    student = features.clone().requires_grad_(True)
    strategy = create_strategy("attention", pairs=[["t", "s"]])
    loss = strategy.loss(
        ModelOutputs(torch.zeros(2, 3, 4, 4), {"s": student}),
        ModelOutputs(torch.zeros(2, 3, 4, 4), {"t": features}),
        TARGET,
    )
    loss.backward()
    assert torch.isfinite(student.grad).all()


# --- cwd --------------------------------------------------------------------------------------


def reference_cwd(student: np.ndarray, teacher: np.ndarray, tau: float) -> float:
    batch, channels = student.shape[:2]
    total = 0.0
    for b in range(batch):
        for c in range(channels):
            p_teacher = softmax(teacher[b, c].reshape(-1) / tau)
            p_student = softmax(student[b, c].reshape(-1) / tau)
            total += kl(p_teacher, p_student)
    return total / (batch * channels) * tau**2


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_cwd_logits_match_reference(tau):
    student, teacher = random(2, 3, 4, 4, seed=30), random(2, 3, 4, 4, seed=31)
    strategy = create_strategy("cwd", temperature=tau)
    loss = strategy.loss(outputs(student), outputs(teacher), TARGET)
    assert close(loss, reference_cwd(student, teacher, tau))


def test_cwd_identical_logits_zero():
    logits = random(2, 3, 4, 4, seed=32)
    loss = create_strategy("cwd").loss(outputs(logits), outputs(logits), TARGET)
    assert abs(loss.item()) < 1e-6


def test_cwd_features_with_adapter_match_reference():
    student, teacher = random(2, 2, 4, 4, seed=33), random(2, 3, 4, 4, seed=34)
    weight, bias = random(3, 2, seed=35), random(3, seed=36)
    strategy = create_strategy("cwd", on="features", pairs=[["t", "s"]], temperature=2.0)
    strategy.setup({"s": 2}, {"t": 3})
    with torch.no_grad():
        strategy.adapters["t__s"].weight.copy_(torch.tensor(weight).view(3, 2, 1, 1))
        strategy.adapters["t__s"].bias.copy_(torch.tensor(bias))
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)
    expected = reference_cwd(apply_adapter(student, weight, bias), teacher, 2.0)
    assert close(loss, expected)


def test_cwd_equal_channels_builds_no_adapter():
    strategy = create_strategy("cwd", on="features", pairs=[["t", "s"]])
    strategy.setup({"s": 3}, {"t": 3})
    assert len(strategy.adapters) == 0


def test_cwd_both_adds_logit_and_feature_terms():
    s_logits, t_logits = random(2, 3, 4, 4, seed=37), random(2, 3, 4, 4, seed=38)
    s_feat, t_feat = random(2, 2, 2, 2, seed=39), random(2, 2, 4, 4, seed=40)
    strategy = create_strategy("cwd", on="both", pairs=[["t", "s"]], temperature=4.0)
    strategy.setup({"s": 2}, {"t": 2})
    loss = strategy.loss(outputs(s_logits, s=s_feat), outputs(t_logits, t=t_feat), TARGET)
    expected = reference_cwd(s_logits, t_logits, 4.0) + reference_cwd(
        bilinear_resize(s_feat, 4, 4), t_feat, 4.0
    )
    assert close(loss, expected)


def test_cwd_needs_teacher_logits_only_when_on_logits():
    on_features = create_strategy("cwd", on="features", pairs=[["t", "s"]])
    assert create_strategy("cwd").needs_teacher_logits() is True
    assert on_features.needs_teacher_logits() is False


# --- pairwise ---------------------------------------------------------------------------------


def reference_pairwise(student: np.ndarray, teacher: np.ndarray, k: int, pooling: str) -> float:
    def nodes(maps: np.ndarray, b: int) -> list[np.ndarray]:
        channels, height, width = maps.shape[1:]
        found = []
        for i in range(0, height, k):
            for j in range(0, width, k):
                window = maps[b, :, i : i + k, j : j + k].reshape(channels, -1)
                found.append(window.mean(axis=1) if pooling == "avg" else window.max(axis=1))
        return found

    def cosine(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    total, count = 0.0, 0
    for b in range(student.shape[0]):
        s_nodes, t_nodes = nodes(student, b), nodes(teacher, b)
        for i in range(len(s_nodes)):
            for j in range(len(s_nodes)):
                a_student = cosine(s_nodes[i], s_nodes[j])
                a_teacher = cosine(t_nodes[i], t_nodes[j])
                total += (a_student - a_teacher) ** 2
                count += 1
    return total / count


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pairwise_matches_reference(pooling):
    student, teacher = random(2, 3, 4, 4, seed=41), random(2, 5, 4, 4, seed=42)
    strategy = create_strategy("pairwise", pairs=[["t", "s"]], pool_size=2, pooling=pooling)
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)
    assert close(loss, reference_pairwise(student, teacher, 2, pooling))


def test_pairwise_node_scale_sets_window():
    student, teacher = random(2, 3, 8, 8, seed=43), random(2, 2, 8, 8, seed=44)
    strategy = create_strategy("pairwise", pairs=[["t", "s"]], node_scale=0.25)
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)
    assert close(loss, reference_pairwise(student, teacher, 2, "avg"))


def test_pairwise_identical_outputs_zero():
    features = random(2, 3, 8, 8, seed=45)
    strategy = create_strategy("pairwise", pairs=[["t", "s"]])
    loss = strategy.loss(outputs(s=features), outputs(t=features), TARGET)
    assert abs(loss.item()) < 1e-6


def test_pairwise_resizes_student_map_to_teacher_size():
    student, teacher = random(2, 3, 2, 2, seed=46), random(2, 4, 4, 4, seed=47)
    strategy = create_strategy("pairwise", pairs=[["t", "s"]], pool_size=1)
    loss = strategy.loss(outputs(s=student), outputs(t=teacher), TARGET)
    expected = reference_pairwise(bilinear_resize(student, 4, 4), teacher, 1, "avg")
    assert close(loss, expected)


# --- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "label"),
    [
        ("none", {}, "none"),
        ("logit", {}, "logit(T=4)"),
        ("logit", {"temperature": 2.5}, "logit(T=2.5)"),
        ("feature", {"pairs": [["a", "b"]]}, "feature"),
        ("feature", {"pairs": [["a", "b"]], "distance": "smooth_l1"}, "feature(smooth_l1)"),
        ("attention", {"pairs": [["a", "b"]]}, "attention"),
        ("attention", {"pairs": [["a", "b"]], "p": 1, "mode": "code"}, "attention(p=1,mode=code)"),
        ("cwd", {}, "cwd(T=4)"),
        ("cwd", {"on": "both", "pairs": [["a", "b"]], "temperature": 1}, "cwd(T=1,on=both)"),
        ("pairwise", {"pairs": [["a", "b"]]}, "pairwise"),
        ("pairwise", {"pairs": [["a", "b"]], "node_scale": 0.5}, "pairwise(scale=0.5)"),
        (
            "pairwise",
            {"pairs": [["a", "b"]], "pool_size": 2, "pooling": "max"},
            "pairwise(pool=2,max)",
        ),
    ],
)
def test_describe_label(name, options, label):
    assert create_strategy(name, **options).describe() == label
