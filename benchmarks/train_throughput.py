"""Compare kdbench's trainer with a minimal hand-written PyTorch loop on the same data.

Both train the same student (fresh weights from the same seed) for the same number of optimiser
steps over the same in-memory batches with the same loss (cross-entropy + soft Dice) and AdamW, then
the script prints slices per second for each and their ratio (kdbench / plain loop; target >= 0.9).

    python benchmarks/train_throughput.py --epochs 3 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from kdbench.data import create_dataset, split_by_patient
from kdbench.models import create_model
from kdbench.train import TrainSettings, train_model


def plain_loop(model, images, labels, train_idx, epochs, batch_size, lr, weight_decay, seed):
    """Train with the shortest loop that does the same work as kdbench's trainer."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, y = images[idx], labels[idx]
            logits = model(x)
            probs = logits.softmax(1)[:, 1:]
            one_hot = F.one_hot(y, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
            inter = (probs * one_hot).sum((0, 2, 3))
            dice = (2 * inter + 1e-5) / (probs.sum((0, 2, 3)) + one_hot.sum((0, 2, 3)) + 1e-5)
            loss = F.cross_entropy(logits, y) + (1 - dice.mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cfpnet_m", help="registered student model")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for each of the two loops")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per step")
    parser.add_argument("--image-size", type=int, default=128, help="slice size in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating timing rounds; best kept"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = create_dataset("synthetic", image_size=args.image_size)
    split = split_by_patient(data.patient_ids, {"train": 0.6, "val": 0.2, "test": 0.2}, 0)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    train_idx = torch.as_tensor(split["train"])
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, select="last", val_every=0
    )
    samples = args.epochs * len(train_idx)

    def fresh():
        torch.manual_seed(0)
        return create_model(args.model, in_channels=1, num_classes=data.num_classes)

    best = {"kdbench": float("inf"), "plain": float("inf")}
    for _ in range(args.rounds):  # alternate so drift in machine load hits both alike
        model = fresh()
        start = time.perf_counter()
        train_model(model, data, split, settings, seed=0)
        best["kdbench"] = min(best["kdbench"], time.perf_counter() - start)

        model = fresh()
        start = time.perf_counter()
        plain_loop(model, images, labels, train_idx, args.epochs, args.batch_size, 1e-3, 1e-4, 0)
        best["plain"] = min(best["plain"], time.perf_counter() - start)

    rate = {k: samples / v for k, v in best.items()}
    print(
        f"model {args.model}, {samples} slices of {args.image_size}x{args.image_size} per run, "
        f"batch {args.batch_size}, {args.threads} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    print("| loop | seconds | slices/s |")
    print("| --- | --- | --- |")
    for name in ("plain", "kdbench"):
        print(f"| {name} | {best[name]:.2f} | {rate[name]:.1f} |")
    print(
        f"throughput ratio kdbench / plain: {rate['kdbench'] / rate['plain']:.3f} (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
