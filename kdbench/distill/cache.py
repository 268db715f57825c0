"""Teacher-output cache: teacher logits and feature maps computed once per training sample.

A frozen teacher gives the same outputs for the same image in every epoch, so a distillation run
without random augmentation can compute them once and read them back, which removes the teacher's
forward pass from every step. With augmentation the teacher sees a different image each epoch and
cached outputs would be stale, so the cache rejects that configuration.

Memory per sample is ``itemsize * (K * H * W + sum_s C_s * H_s * W_s)`` bytes, with itemsize 2 for
the default float16 storage (see :attr:`TeacherOutputCache.bytes_per_sample`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.distill.base import ModelOutputs
from kdbench.errors import ConfigError
from kdbench.models.base import SegmentationModel

logger = logging.getLogger(__name__)

STORAGES = ("memory", "disk")
DTYPES = {torch.float16: "float16", torch.float32: "float32"}
_SHARED: dict[str, TeacherOutputCache] = {}


def check_cache_allowed(augment: bool) -> None:
    """Raise ConfigError when training uses random augmentation, because cached outputs would
    then belong to images the student never sees."""
    if augment:
        raise ConfigError(
            "teacher output cache cannot be used with random augmentation, because the teacher "
            "would need to see each augmented image: set train.augment = false or "
            'run.teacher_cache = "off"'
        )


def state_dict_sha256(model: nn.Module) -> str:
    """Return the sha256 of a model's state_dict: names, dtypes, shapes and values, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def images_sha256(images: torch.Tensor) -> str:
    """Return the sha256 of an image tensor's dtype, shape and values."""
    value = images.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{value.dtype}|{tuple(value.shape)}|".encode())
    digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(
    teacher_key: str,
    images: torch.Tensor,
    rows: torch.Tensor,
    stages: Sequence[str],
    keep_logits: bool,
    dtype: torch.dtype,
) -> str:
    """Return the sha256 that names one cache.

    It covers the teacher identity, the cached rows' numbers and pixel values, the stages, the
    logits flag and the storage dtype.
    """
    record = {
        "teacher": teacher_key,
        "images": images_sha256(images.index_select(0, rows)),
        "rows": hashlib.sha256(rows.numpy().tobytes()).hexdigest(),
        "stages": list(stages),
        "keep_logits": keep_logits,
        "dtype": DTYPES[dtype],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def cached_rows(rows: torch.Tensor | Sequence[int] | None, num_images: int) -> torch.Tensor:
    """Return ``rows`` as a 1-D int64 tensor (all rows when None); raise ValueError when a row
    is outside ``0 .. num_images - 1`` or repeated."""
    if rows is None:
        return torch.arange(num_images)
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1).cpu()
    outside = rows[(rows < 0) | (rows >= num_images)]
    if outside.numel():
        raise ValueError(f"cache row {outside[0].item()} is outside 0 .. {num_images - 1}")
    if not rows.numel():
        raise ValueError("cache rows are empty; pass the training split's slice indices")
    if len(torch.unique(rows)) != len(rows):
        raise ValueError("cache rows must not repeat")
    return rows


class TeacherOutputCache:
    """Teacher logits and feature maps for the training rows of ``images``, computed once.

    ``images`` is float32 ``(N, C, H, W)``, for example ``SliceSet.images``. ``rows`` selects the
    rows to cache (the training split's slice indices; all rows when None), and :meth:`get`
    takes the same row numbers, so a trainer can pass its batch's slice indices. The teacher
    runs in eval mode under ``torch.no_grad`` on its own device, ``batch_size`` rows at a time,
    and its previous train/eval mode is restored afterwards. The outputs are stored as ``dtype``
    (float16 by default, or float32 where float16 rounding matters):

    - ``storage="memory"``: CPU tensors.
    - ``storage="disk"``: ``.npy`` files opened as memory maps under
      ``directory/<cache_key>/``. A complete cache there (its ``meta.json`` is written last) is
      reused without running the teacher, also by another process.

    ``key`` identifies the teacher, e.g. the sha256 of its checkpoint file; when None, the
    sha256 of its state_dict is used. :attr:`cache_key` also covers the cached rows, their
    pixel values, ``stages``, ``keep_logits`` and ``dtype`` (see :func:`cache_key`).
    ``augment=True`` raises ConfigError (see :func:`check_cache_allowed`).

    With ``keep_logits=False`` the outputs returned by :meth:`get` have ``logits=None``; use it
    only for strategies whose ``needs_teacher_logits()`` is False.
    """

    def __init__(
        self,
        teacher: SegmentationModel,
        images: torch.Tensor | np.ndarray,
        stages: Sequence[str],
        *,
        keep_logits: bool = True,
        rows: torch.Tensor | Sequence[int] | None = None,
        storage: str = "memory",
        directory: str | os.PathLike | None = None,
        batch_size: int = 16,
        key: str | None = None,
        dtype: torch.dtype = torch.float16,
        augment: bool = False,
    ) -> None:
        check_cache_allowed(augment)
        if storage not in STORAGES:
            raise ConfigError(f"cache storage must be 'memory' or 'disk', got {storage!r}")
        if storage == "disk" and directory is None:
            raise ConfigError("cache storage 'disk' needs a directory; pass directory=...")
        if dtype not in DTYPES:
            raise ConfigError(f"cache dtype must be torch.float16 or torch.float32, got {dtype}")
        if batch_size < 1:
            raise ConfigError(f"cache batch_size must be at least 1, got {batch_size}")
        images = torch.as_tensor(images)
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if not keep_logits and not stages:
            raise ConfigError("the cache would hold nothing: keep_logits is False and no stages")

        self.stages = list(stages)
        self.keep_logits = keep_logits
        self.storage = storage
        self.dtype = dtype
        self.rows = cached_rows(rows, len(images))
        self.num_samples = len(self.rows)
        # Cache position of every image row, -1 for rows not cached.
        self._position = torch.full((len(images),), -1, dtype=torch.long)
        self._position[self.rows] = torch.arange(self.num_samples)
        self.cache_key = cache_key(
            key or state_dict_sha256(teacher), images, self.rows, self.stages, keep_logits, dtype
        )
        self.directory = Path(directory) / self.cache_key if directory is not None else None
        # Arrays, one per output: "logits" and each stage name, (N, C, H, W) each.
        self._arrays: dict[str, torch.Tensor | np.ndarray] = {}

        if storage == "disk" and (self.directory / "meta.json").is_file():
            self._open_disk()
            logger.info(
                "teacher output cache %s reused from %s", self.cache_key[:12], self.directory
            )
            return
        started = time.perf_counter()
        self._compute(teacher, images.index_select(0, self.rows), batch_size)
        logger.info(
            "teacher output cache %s: %d samples, %.1f MiB (%s), computed in %.1f s",
            self.cache_key[:12],
            self.num_samples,
            self.nbytes / 2**20,
            storage,
            time.perf_counter() - started,
        )

    @property
    def bytes_per_sample(self) -> int:
        """Bytes stored per sample: itemsize * (K*H*W if logits kept + sum_s C_s*H_s*W_s)."""
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return itemsize * sum(int(np.prod(a.shape[1:])) for a in self._arrays.values())

    @property
    def nbytes(self) -> int:
        """Bytes stored for all samples."""
        return self.bytes_per_sample * self.num_samples

    def __len__(self) -> int:
        return self.num_samples

    def get(
        self, indices: torch.Tensor | Sequence[int], device: torch.device | str | None = None
    ) -> ModelOutputs:
        """Return float32 teacher outputs for image rows ``indices`` (row numbers of ``images``).

        ``logits`` is ``(B, K, H, W)`` (None without ``keep_logits``) and ``features[stage]`` is
        ``(B, C_s, H_s, W_s)``, on ``device`` (CPU when None). Raises IndexError naming the
        first row that is outside ``images`` or was not cached.
        """
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1).cpu()
        outside = index[(index < 0) | (index >= len(self._position))]
        if outside.numel():
            raise IndexError(
                f"row {outside[0].item()} is outside the cached images 0 .. "
                f"{len(self._position) - 1}"
            )
        position = self._position[index]
        if (position < 0).any():
            missing = index[position < 0][0].item()
            raise IndexError(
                f"row {missing} is not in the teacher output cache; it contains only the rows "
                "passed as rows= (the training split)"
            )

        outputs = {name: self._rows(name, position, device) for name in self._arrays}
        logits = outputs.pop("logits", None)
        return ModelOutputs(logits=logits, features={s: outputs[s] for s in self.stages})

    def _rows(self, name: str, index: torch.Tensor, device: Any) -> torch.Tensor:
        array = self._arrays[name]
        if isinstance(array, np.ndarray):
            rows = torch.from_numpy(np.ascontiguousarray(array[index.numpy()]))
        else:
            rows = array.index_select(0, index)
        return rows.to(device=device, dtype=torch.float32)

    def _compute(self, teacher: SegmentationModel, images: torch.Tensor, batch_size: int) -> None:
        device = next(teacher.parameters()).device
        was_training = teacher.training
        teacher.eval()
        temporary = self._prepare_disk() if self.storage == "disk" else None
        try:
            with torch.no_grad():
                for start in range(0, self.num_samples, batch_size):
                    batch = images[start : start + batch_size].to(device, torch.float32)
                    logits, features = teacher.forward_stages(batch, self.stages)
                    outputs = {"logits": logits} if self.keep_logits else {}
                    outputs.update(features)
                    self._store(start, outputs, temporary)
        except BaseException:
            if temporary is not None:
                self._arrays.clear()
                shutil.rmtree(temporary, ignore_errors=True)
            raise
        finally:
            teacher.train(was_training)
        if temporary is not None:
            self._finish_disk(temporary)

    def _store(self, start: int, outputs: dict[str, torch.Tensor], temporary: Path | None) -> None:
        for name, value in outputs.items():
            rows = value.detach().to("cpu", self.dtype)
            if name not in self._arrays:
                shape = (self.num_samples, *rows.shape[1:])
                if temporary is None:
                    self._arrays[name] = torch.empty(shape, dtype=self.dtype)
                else:
                    self._arrays[name] = np.lib.format.open_memmap(
                        temporary / self._file_name(name),
                        mode="w+",
                        dtype=DTYPES[self.dtype],
                        shape=shape,
                    )
            array = self._arrays[name]
            if isinstance(array, np.ndarray):
                array[start : start + len(rows)] = rows.numpy()
            else:
                array[start : start + len(rows)] = rows

    def _file_name(self, name: str) -> str:
        # Stage names are user input, so files are numbered and meta.json maps names to files.
        return "logits.npy" if name == "logits" else f"stage{self.stages.index(name)}.npy"

    def _prepare_disk(self) -> Path:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{self.cache_key[:12]}-", dir=self.directory.parent))

    def _finish_disk(self, temporary: Path) -> None:
        """Flush the arrays, write meta.json last and move the folder into place atomically."""
        files = {}
        for name, array in self._arrays.items():
            array.flush()
            files[name] = self._file_name(name)
        meta = {
            "cache_key": self.cache_key,
            "num_samples": self.num_samples,
            "stages": self.stages,
            "keep_logits": self.keep_logits,
            "dtype": DTYPES[self.dtype],
            "files": files,
        }
        (temporary / "meta.json").write_text(json.dumps(meta, indent=2))
        self._arrays.clear()
        try:
            os.replace(temporary, self.directory)
        except OSError:
            # Another process finished the same cache first; its copy is identical.
            shutil.rmtree(temporary, ignore_errors=True)
            if not (self.directory / "meta.json").is_file():
                raise
        self._open_disk()

    def _open_disk(self) -> None:
        meta = json.loads((self.directory / "meta.json").read_text())
        for name, file_name in meta["files"].items():
            self._arrays[name] = np.load(self.directory / file_name, mmap_mode="r")
        # Logits first, then stages in request order, as _compute fills them.
        order = (["logits"] if self.keep_logits else []) + self.stages
        self._arrays = {name: self._arrays[name] for name in order}


def shared_cache(
    teacher: SegmentationModel,
    images: torch.Tensor | np.ndarray,
    stages: Sequence[str],
    **options: Any,
) -> TeacherOutputCache:
    """Return the process-wide cache for this teacher, images and stages, building it once.

    Takes the arguments of :class:`TeacherOutputCache`. Cells that use the same teacher, the
    same training images and the same stages (and logits flag and dtype) share one cache. The
    teacher and images are hashed on every call to find the key.
    """
    check_cache_allowed(options.get("augment", False))
    dtype = options.get("dtype", torch.float16)
    if dtype not in DTYPES:
        raise ConfigError(f"cache dtype must be torch.float16 or torch.float32, got {dtype}")
    images = torch.as_tensor(images)
    teacher_key = options.get("key") or state_dict_sha256(teacher)
    rows = cached_rows(options.get("rows"), len(images))
    key = cache_key(
        teacher_key, images, rows, list(stages), options.get("keep_logits", True), dtype
    )
    if key not in _SHARED:
        _SHARED[key] = TeacherOutputCache(
            teacher, images, stages, **{**options, "key": teacher_key}
        )
    return _SHARED[key]


def clear_shared_caches() -> None:
    """Forget every cache that :func:`shared_cache` built, so their memory can be freed."""
    _SHARED.clear()
