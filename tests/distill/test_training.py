"""Short distillation runs through the trainer: the KD loss falls, and the cache changes nothing."""

from __future__ import annotations

import pytest
import torch

from kdbench.data import create_dataset, split_by_patient
from kdbench.distill import TeacherOutputCache, build_strategy
from kdbench.models import create_model
from kdbench.train import TrainSettings, train_model

pytestmark = pytest.mark.slow

IMAGE_SIZE = 32

# Tiny U-Net teacher (enc1, enc2, bottleneck, dec1, dec2) and a narrower tiny U-Net student with
# the same stage names, so feature terms pair stages with different channel counts.
TERMS = {
    "logit": {"temperature": 4.0},
    "feature": {"pairs": [["enc2", "enc2"]]},
    "attention": {"pairs": [["enc2", "enc2"], ["bottleneck", "bottleneck"]]},
    "cwd": {},
    "pairwise": {"pairs": [["enc2", "enc2"]], "pool_size": 2},
}


@pytest.fixture(scope="module")
def data():
    return create_dataset("synthetic", n_patients=4, slices_per_patient=3, image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def split(data):
    return split_by_patient(data.patient_ids, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)


def settings(epochs: int) -> TrainSettings:
    # supervised_weight 0 leaves the distillation term alone in the objective, so its fall
    # measures the strategy and not a side effect of the supervised loss.
    return TrainSettings(
        epochs=epochs, batch_size=3, lr=1e-2, supervised_weight=0.0, select="last", val_every=0
    )


def models(data):
    torch.manual_seed(0)
    teacher = create_model("unet", num_classes=data.num_classes, base_width=4, depth=2)
    torch.manual_seed(1)
    student = create_model("unet", num_classes=data.num_classes, base_width=2, depth=2)
    return teacher, student


def distill_setup(kind, data):
    teacher, student = models(data)
    torch.manual_seed(2)
    strategy = build_strategy([{"kind": kind, **TERMS[kind]}])
    strategy.setup(student.stage_channels(IMAGE_SIZE), teacher.stage_channels(IMAGE_SIZE))
    return teacher, student, strategy


@pytest.mark.parametrize("kind", sorted(TERMS))
def test_training_lowers_distillation_loss(kind, data, split):
    teacher, student, strategy = distill_setup(kind, data)
    result = train_model(
        student, data, split, settings(epochs=4), seed=0, strategy=strategy, teacher=teacher
    )
    assert result.history[-1]["train_kd_loss"] < result.history[0]["train_kd_loss"]


@pytest.mark.parametrize("kind", ["logit", "feature"])
def test_cached_and_uncached_runs_match(kind, data, split):
    teacher, student, strategy = distill_setup(kind, data)
    uncached = train_model(
        student, data, split, settings(epochs=2), seed=0, strategy=strategy, teacher=teacher
    )

    teacher, student, strategy = distill_setup(kind, data)
    cache = TeacherOutputCache(
        teacher,
        data.images,
        strategy.teacher_stages(),
        rows=split["train"],
        keep_logits=strategy.needs_teacher_logits(),
        dtype=torch.float32,
    )
    cached = train_model(
        student,
        data,
        split,
        settings(epochs=2),
        seed=0,
        strategy=strategy,
        teacher=teacher,
        teacher_cache=cache,
    )

    # float32 storage keeps the teacher's outputs unrounded, so only the batch grouping of the
    # teacher's forward passes differs. The 1e-5 absolute tolerance allows for float32
    # summation-order noise that two epochs of AdamW could carry into the weights.
    for name, value in uncached.state_dict.items():
        assert torch.allclose(cached.state_dict[name].float(), value.float(), atol=1e-5), name
