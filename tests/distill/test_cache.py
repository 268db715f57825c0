"""Teacher-output cache: values against the teacher, storage, keys, sharing and augmentation."""

from __future__ import annotations

import pytest
import torch

from kdbench.distill import (
    TeacherOutputCache,
    check_cache_allowed,
    clear_shared_caches,
    shared_cache,
)
from kdbench.errors import ConfigError
from kdbench.models import create_model

STAGES = ["enc1", "bottleneck"]

# float16 keeps an 11-bit significand, so rounding a float32 value changes it by at most
# 2**-11 (about 4.9e-4) of its magnitude. Values below 2**-14 are stored as subnormals, with an
# absolute error of at most 2**-25. rtol 1e-3 and atol 1e-6 bound both with a margin.
FLOAT16_RTOL, FLOAT16_ATOL = 1e-3, 1e-6


def tiny_teacher(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("unet", num_classes=8, base_width=4, depth=2)


def images(n: int = 5) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def reference_outputs(teacher, batch):
    teacher.eval()
    with torch.no_grad():
        return teacher.forward_stages(batch, STAGES)


@pytest.fixture(autouse=True)
def _no_shared_caches():
    clear_shared_caches()
    yield
    clear_shared_caches()


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_cache_matches_teacher_within_float16(storage, tmp_path):
    teacher, data = tiny_teacher(), images()
    cache = TeacherOutputCache(
        teacher, data, STAGES, storage=storage, directory=tmp_path, batch_size=2
    )
    rows = torch.tensor([4, 0, 2])
    cached = cache.get(rows)
    logits, features = reference_outputs(teacher, data[rows])

    assert cached.logits.dtype == torch.float32
    assert torch.allclose(cached.logits, logits, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)
    for stage in STAGES:
        assert torch.allclose(
            cached.features[stage], features[stage], rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL
        )


def test_cache_float32_matches_teacher():
    teacher, data = tiny_teacher(), images()
    cache = TeacherOutputCache(teacher, data, STAGES, dtype=torch.float32, batch_size=2)
    logits, _ = reference_outputs(teacher, data[[1, 3]])
    assert torch.allclose(cache.get([1, 3]).logits, logits, rtol=0, atol=1e-6)


def test_cache_rows_keep_image_row_numbers():
    teacher, data = tiny_teacher(), images()
    cache = TeacherOutputCache(teacher, data, STAGES, rows=[3, 1], dtype=torch.float32)
    logits, _ = reference_outputs(teacher, data[[3]])
    assert torch.allclose(cache.get([3]).logits, logits, rtol=0, atol=1e-6)
    assert len(cache) == 2


def test_cache_rejects_row_not_cached():
    cache = TeacherOutputCache(tiny_teacher(), images(), STAGES, rows=[3, 1])
    with pytest.raises(IndexError, match="row 2 is not in the teacher output cache"):
        cache.get([1, 2])


def test_cache_rejects_row_outside_images():
    cache = TeacherOutputCache(tiny_teacher(), images(), STAGES)
    with pytest.raises(IndexError, match="row 5 is outside"):
        cache.get([5])


def test_cache_bytes_per_sample():
    cache = TeacherOutputCache(tiny_teacher(), images(), STAGES)
    # logits 8 x 32 x 32, enc1 4 x 32 x 32, bottleneck 16 x 8 x 8, 2 bytes each.
    assert cache.bytes_per_sample == 2 * (8 * 32 * 32 + 4 * 32 * 32 + 16 * 8 * 8)


def test_cache_without_logits():
    cache = TeacherOutputCache(tiny_teacher(), images(), STAGES, keep_logits=False)
    assert cache.get([0]).logits is None
    assert cache.bytes_per_sample == 2 * (4 * 32 * 32 + 16 * 8 * 8)


def test_cache_restores_teacher_mode_and_grads():
    teacher = tiny_teacher().train()
    TeacherOutputCache(teacher, images(), STAGES)
    assert teacher.training is True
    assert all(p.grad is None for p in teacher.parameters())


def test_disk_cache_reused_without_teacher_run(tmp_path):
    data = images()
    first = TeacherOutputCache(
        tiny_teacher(0), data, STAGES, storage="disk", directory=tmp_path, key="checkpoint-a"
    )
    # Same key with other weights: a reused cache still contains the first teacher's outputs.
    second = TeacherOutputCache(
        tiny_teacher(7), data, STAGES, storage="disk", directory=tmp_path, key="checkpoint-a"
    )
    assert torch.equal(first.get([0, 1]).logits, second.get([0, 1]).logits)
    assert (tmp_path / first.cache_key / "meta.json").is_file()


def test_cache_key_changes_with_teacher_images_and_stages():
    teacher, data = tiny_teacher(), images()
    base = TeacherOutputCache(teacher, data, STAGES).cache_key
    assert TeacherOutputCache(tiny_teacher(3), data, STAGES).cache_key != base
    assert TeacherOutputCache(teacher, data + 0.01, STAGES).cache_key != base
    assert TeacherOutputCache(teacher, data, ["enc1"]).cache_key != base


def test_shared_cache_same_key_same_object():
    teacher, data = tiny_teacher(), images()
    assert shared_cache(teacher, data, STAGES) is shared_cache(teacher, data.clone(), STAGES)


def test_shared_cache_other_stages_other_object():
    teacher, data = tiny_teacher(), images()
    assert shared_cache(teacher, data, STAGES) is not shared_cache(teacher, data, ["enc1"])


def test_check_cache_allowed_rejects_augmentation():
    with pytest.raises(ConfigError, match="set train.augment = false or run.teacher_cache"):
        check_cache_allowed(True)


def test_check_cache_allowed_without_augmentation():
    assert check_cache_allowed(False) is None


def test_cache_constructor_rejects_augmentation():
    with pytest.raises(ConfigError, match="random augmentation"):
        TeacherOutputCache(tiny_teacher(), images(), STAGES, augment=True)


def test_shared_cache_rejects_augmentation():
    with pytest.raises(ConfigError, match="random augmentation"):
        shared_cache(tiny_teacher(), images(), STAGES, augment=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"storage": "gpu"}, "'memory' or 'disk'"),
        ({"storage": "disk"}, "needs a directory"),
        ({"dtype": torch.bfloat16}, "float16 or torch.float32"),
        ({"keep_logits": False, "stages": []}, "would hold nothing"),
    ],
)
def test_cache_invalid_options_raise(options, message):
    stages = options.pop("stages", STAGES)
    with pytest.raises(ConfigError, match=message):
        TeacherOutputCache(tiny_teacher(), images(), stages, **options)


def test_disk_cache_failure_leaves_no_files(tmp_path):
    with pytest.raises(KeyError, match="no stage"):
        TeacherOutputCache(tiny_teacher(), images(), ["enc9"], storage="disk", directory=tmp_path)
    assert list(tmp_path.iterdir()) == []
