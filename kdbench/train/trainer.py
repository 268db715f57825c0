"""The trainer for one matrix cell: a student (or a teacher) with optional distillation terms."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from kdbench.data.base import SliceSet
from kdbench.distill.base import ModelOutputs
from kdbench.evaluate import evaluate_model
from kdbench.train.losses import supervised_loss
from kdbench.train.seeding import seed_everything
from kdbench.train.settings import TrainSettings

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict], None]


@dataclass
class TrainResult:
    """Outcome of one training run.

    ``state_dict`` contains the selected epoch's model weights only.
    """

    history: list[dict] = field(default_factory=list)
    state_dict: dict = field(default_factory=dict)
    selected_epoch: int = 0
    selection: str = "last"
    seconds: float = 0.0


def train_model(
    model: torch.nn.Module,
    data: SliceSet,
    split: dict[str, list[int]],
    settings: TrainSettings,
    *,
    seed: int,
    strategy=None,
    teacher: torch.nn.Module | None = None,
    teacher_cache=None,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train ``model`` on ``split["train"]`` with AdamW on CE + Dice plus the strategy's terms.

    ``strategy`` is a :class:`kdbench.distill.combine.CombinedStrategy` (or None for supervised
    training alone). Its helper modules are optimised with the model but never copied into
    ``TrainResult.state_dict``. The teacher, when given, is frozen and kept in eval mode; with a
    ``teacher_cache`` its outputs are read from the cache instead of recomputed. The model loaded
    with the selected epoch's weights is left in ``model`` on return.
    """
    seed_everything(seed, settings.deterministic)
    started = time.perf_counter()
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
        for param in teacher.parameters():
            param.requires_grad_(False)

    params = list(model.parameters())
    if strategy is not None:
        strategy.to(device).train()
        params += [p for p in strategy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    loop = _Loop(model, optimizer, settings, device, strategy, teacher, teacher_cache)

    train_idx = torch.as_tensor(split["train"], dtype=torch.long)
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    val_data = data.subset(split.get("val", [])) if settings.val_every else None
    generator = torch.Generator().manual_seed(seed)

    result = TrainResult(selection=settings.select)
    best_iou = -math.inf
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        sums = _run_epoch(loop, images, labels, order, generator)
        record = {"epoch": epoch, **sums, "val_mean_iou": None}

        if val_data is not None and len(val_data) and epoch % settings.val_every == 0:
            metrics, _ = evaluate_model(model, val_data, settings.eval_batch_size, device)
            record["val_mean_iou"] = metrics["mean_iou"]
            val_iou = metrics["mean_iou"] if metrics["mean_iou"] is not None else -1.0
            if settings.select == "best_val" and val_iou > best_iou:
                best_iou = val_iou
                result.selected_epoch = epoch
                result.state_dict = copy.deepcopy(model.state_dict())
        record["seconds"] = time.perf_counter() - epoch_start
        result.history.append(record)
        log.debug("epoch %d: %s", epoch, record)
        if progress is not None:
            progress(record)

    if settings.select == "last" or not result.state_dict:
        result.selected_epoch = settings.epochs
        result.state_dict = copy.deepcopy(model.state_dict())
    model.load_state_dict(result.state_dict)
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Loop:
    """Shared inputs of every training step of one run."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    settings: TrainSettings
    device: str
    strategy: object | None  # CombinedStrategy
    teacher: torch.nn.Module | None
    teacher_cache: object | None  # TeacherOutputCache


def _run_epoch(
    loop: _Loop,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    generator: torch.Generator,
) -> dict:
    """Run one pass over the slices in ``order``; return mean losses over its batches."""
    settings, strategy = loop.settings, loop.strategy
    student_stages = strategy.student_stages() if strategy is not None else []
    distill = strategy is not None and len(strategy.terms) > 0
    totals = {"train_loss": 0.0, "train_sup_loss": 0.0, "train_kd_loss": 0.0}
    batches = 0

    for start in range(0, len(order), settings.batch_size):
        idx = order[start : start + settings.batch_size]
        x = images[idx]
        y = labels[idx]
        if settings.augment:
            x, y = _random_flips(x, y, generator)
        x, y = x.to(loop.device), y.to(loop.device)

        if student_stages:
            logits, feats = loop.model.forward_stages(x, student_stages)
        else:
            logits, feats = loop.model(x), {}
        sup = supervised_loss(logits, y, settings.dice_weight)
        loss = settings.supervised_weight * sup
        kd = torch.zeros((), device=loop.device)
        if distill:
            teacher_out = _teacher_outputs(strategy, loop.teacher, loop.teacher_cache, idx, x)
            kd = strategy(ModelOutputs(logits, feats), teacher_out, y)
            loss = loss + kd

        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()

        totals["train_loss"] += loss.item()
        totals["train_sup_loss"] += sup.item()
        totals["train_kd_loss"] += kd.item()
        batches += 1
    return {k: v / max(batches, 1) for k, v in totals.items()}


def _teacher_outputs(strategy, teacher, teacher_cache, idx, x) -> ModelOutputs | None:
    if not strategy.needs_teacher:
        return None
    if teacher_cache is not None:
        return teacher_cache.get(idx, device=x.device)
    if teacher is None:
        raise ValueError("this strategy needs a teacher, but none was given")
    with torch.no_grad():
        logits, feats = teacher.forward_stages(x, strategy.teacher_stages())
    return ModelOutputs(logits, feats)


def _random_flips(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
    """Flip each sample left-right and up-down with probability 0.5 each."""
    flips = torch.rand(len(x), 2, generator=generator) < 0.5
    x, y = x.clone(), y.clone()
    for i, (horizontal, vertical) in enumerate(flips.tolist()):
        if horizontal:
            x[i], y[i] = x[i].flip(-1), y[i].flip(-1)
        if vertical:
            x[i], y[i] = x[i].flip(-2), y[i].flip(-2)
    return x, y
