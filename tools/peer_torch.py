"""A plain PyTorch G-Blend loop as PyTorch users write it, timed beside keras_gblend.

What a user would pick instead of keras_gblend: a hand-written PyTorch training
loop with one classifier per modality plus a fused one, the loss a weighted sum
of the heads' cross-entropies, and the weights re-estimated in situ from the
heads' mean losses on a fixed training subset `T'` and a held-out set `V`
(`w_k` proportional to `dG_k / dO_k^2`, floored at `min_weight`), as the G-Blend
callbacks of tsai and BalanceBenchmark's trainer do. Same data, same layers
(the README's `conv_encoder((28, 28, 1), filters=(8,))` and
`mlp_encoder((49, 32, 1))`, re-written in `torch.nn`), same schedule as
`GBlendCallback`'s defaults (first measurement after epoch 2, an estimate every
3 epochs), batch 64, SGD(0.01, momentum 0.9).

It runs in the PyTorch environment, where Keras runs on the same PyTorch, and
times in one process, interleaved, the peer and keras_gblend
(`tools.bench_overhead`'s model with a `GBlendCallback` at its defaults):

- epoch time of a G-Blend run (build + training / epochs), and their ratio;
- the time of one estimate: the peer's measurement of `T'` and `V` plus its
  formula; for keras_gblend, its `GBlendCallback.on_epoch_end` at the same
  epochs (timed around the call).

    KERAS_BACKEND=torch .venv-torch/bin/python -m tools.peer_torch   # ~2 min

`--quick` is the smoke setting of the tests (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tools import bench_overhead

MIN_WEIGHT, WARMUP_EPOCHS, SUPER_EPOCH = 0.05, 2, 3


def make_net(num_classes=10, dropout=0.5):
    """The README's two encoders, their heads and the fused head, in torch.nn."""
    import torch
    from torch import nn

    class PeerNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.image = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Dropout(dropout),
                nn.Linear(8 * 14 * 14, 64),
                nn.ReLU(),
            )
            self.audio = nn.Sequential(
                nn.Flatten(), nn.Linear(49 * 32, 64), nn.ReLU(), nn.Dropout(dropout)
            )
            self.heads = nn.ModuleDict(
                {
                    "image": nn.Sequential(
                        nn.Dropout(dropout), nn.Linear(64, num_classes)
                    ),
                    "audio": nn.Sequential(
                        nn.Dropout(dropout), nn.Linear(64, num_classes)
                    ),
                    "fused": nn.Sequential(
                        nn.Dropout(dropout), nn.Linear(128, num_classes)
                    ),
                }
            )

        def forward(self, image, audio):
            features = {
                "image": self.image(image.permute(0, 3, 1, 2)),
                "audio": self.audio(audio),
            }
            features["fused"] = torch.cat([features["image"], features["audio"]], 1)
            return {name: head(features[name]) for name, head in self.heads.items()}

    return PeerNet()


def device():
    """ "cuda" where PyTorch sees a GPU (Keras's torch backend uses it too)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def to_tensors(pair):
    import torch

    x, y = pair
    return tuple(
        torch.from_numpy(np.ascontiguousarray(v)).to(device())
        for v in (x["image"], x["audio"], y.astype(np.int64))
    )


def peer_losses(net, data, batch_size=256):
    """Per-head mean cross-entropy over `data`, no gradient, eval mode."""
    import torch
    import torch.nn.functional as F

    image, audio, y = data
    totals = None
    net.eval()
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            out = net(image[i : i + batch_size], audio[i : i + batch_size])
            batch = torch.stack(
                [
                    F.cross_entropy(logits, y[i : i + batch_size], reduction="sum")
                    for logits in out.values()
                ]
            )
            totals = batch if totals is None else totals + batch
    net.train()
    return (totals / len(y)).cpu().numpy()


def peer_weights(before, after, min_weight=MIN_WEIGHT):
    """G-Blend weights from two `(train, heldout)` measurements of every head.

    Example:

    >>> before = (np.array([1.0, 1.0]), np.array([1.2, 1.1]))
    >>> after = (np.array([0.5, 0.6]), np.array([1.0, 1.05]))
    >>> peer_weights(before, after, min_weight=0.0).round(3).tolist()
    [0.845, 0.155]
    """
    d_g = before[1] - after[1]
    d_o = (after[1] - after[0]) - (before[1] - before[0])
    raw = np.where(d_g > 0, d_g / np.maximum(d_o**2, 1e-12), 0.0)
    if raw.sum() <= 0:
        return None
    return min_weight + (1 - len(raw) * min_weight) * raw / raw.sum()


def peer_run(train, subset, heldout, epochs, batch_size=64, seed=0):
    """One peer G-Blend run; returns its seconds and the seconds of each estimate."""
    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    torch.manual_seed(seed)
    net = make_net().to(device())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    image, audio, y = to_tensors(train)
    subset, heldout = to_tensors(subset), to_tensors(heldout)
    weights = torch.full((3,), 1 / 3, device=device())
    previous, estimates = None, []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y), device=device())
        for i in range(0, len(y), batch_size):
            rows = order[i : i + batch_size]
            out = net(image[rows], audio[rows])
            losses = torch.stack([F.cross_entropy(o, y[rows]) for o in out.values()])
            loss = (weights * losses).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch in measured_epochs(epochs):
            tick = time.perf_counter()
            now = (peer_losses(net, subset), peer_losses(net, heldout))
            if previous is not None:
                new = peer_weights(previous, now)
                if new is not None:
                    weights = torch.as_tensor(new, dtype=torch.float32, device=device())
            previous = now
            estimates.append(time.perf_counter() - tick)
    return time.perf_counter() - start, estimates


def keras_run(train, subset, heldout, epochs, batch_size=64):
    """One keras_gblend in-situ run; its seconds and those of each measurement."""

    from keras_gblend import GBlendCallback

    start = time.perf_counter()
    model = bench_overhead.build_gblend()
    gblend = GBlendCallback(subset, heldout, verbose=0)
    callback = []
    on_epoch_end = gblend.on_epoch_end

    def timed_on_epoch_end(epoch, logs=None):  # GBlendModel.fit runs it first.
        tick = time.perf_counter()
        on_epoch_end(epoch, logs)
        callback.append(time.perf_counter() - tick)

    gblend.on_epoch_end = timed_on_epoch_end
    model.fit(
        *train, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[gblend]
    )
    seconds = time.perf_counter() - start
    return seconds, [callback[e - 1] for e in measured_epochs(epochs)]


def measured_epochs(epochs):
    """The epochs (1-based) after which both sides measure `T'` and `V`.

    Example:

    >>> measured_epochs(9)
    [2, 5, 8]
    """
    return [
        e
        for e in range(1, epochs + 1)
        if e >= WARMUP_EPOCHS and (e - WARMUP_EPOCHS) % SUPER_EPOCH == 0
    ]


def measure(settings):
    import keras

    if keras.backend.backend() != "torch":
        raise SystemExit(
            "Run tools.peer_torch with KERAS_BACKEND=torch (.venv-torch), so that "
            f"both sides run on the same PyTorch; the backend is "
            f"{keras.backend.backend()!r}."
        )
    import torch

    train, subset, heldout = bench_overhead.load_task(
        settings.num_train, settings.subset_size
    )
    load_before = os.getloadavg()
    found = {"peer": [], "keras_gblend": []}

    def run(name, function):
        def go():
            seconds, estimates = function(train, subset, heldout, settings.epochs)
            found[name].append((seconds, estimates))

        return go

    variants = {
        "peer": run("peer", peer_run),
        "keras_gblend": run("keras_gblend", keras_run),
    }
    if settings.warmup:
        for go in variants.values():
            go()
        found = {"peer": [], "keras_gblend": []}
    bench_overhead.interleaved(variants, settings.rounds)
    epoch = {
        name: [s / settings.epochs for s, _ in runs] for name, runs in found.items()
    }
    estimate = {
        name: [float(np.median(e)) if e else float("nan") for _, e in runs]
        for name, runs in found.items()
    }
    summary = bench_overhead.summary
    return {
        "torch": torch.__version__,
        "device": device(),
        "keras": keras.__version__,
        "settings": vars(settings),
        "examples": {
            "train": len(train[1]),
            "T'": len(subset[1]),
            "V": len(heldout[1]),
        },
        "epoch_s": {name: summary(v) for name, v in epoch.items()},
        "estimate_ms": {
            name: summary([1000 * s for s in v]) for name, v in estimate.items()
        },
        "keras_over_peer_epoch": bench_overhead.ratios(
            epoch["keras_gblend"], epoch["peer"]
        ),
        "keras_over_peer_estimate": bench_overhead.ratios(
            estimate["keras_gblend"], estimate["peer"]
        ),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


def table(result):
    cell = bench_overhead._cell
    load = result["load_average"]
    epoch, estimate = result["epoch_s"], result["estimate_ms"]
    rows = [
        ("epoch of a G-Blend run, s", epoch["peer"], epoch["keras_gblend"], None, 3),
        ("one estimate, ms", estimate["peer"], estimate["keras_gblend"], None, 0),
    ]
    lines = [
        f"PyTorch {result['torch']} ({result['device']}), Keras "
        f"{result['keras']} on the torch backend, "
        f"{result['settings']['epochs']} epochs per run, "
        f"{result['settings']['rounds']} interleaved rounds, median (min - max); "
        f"load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after.",
        "",
        "| quantity | PyTorch peer | keras_gblend (torch backend) "
        "| keras_gblend / peer |",
        "|---|---|---|---|",
    ]
    ratio = [result["keras_over_peer_epoch"], result["keras_over_peer_estimate"]]
    for (name, peer, ours, _, digits), r in zip(rows, ratio):
        lines.append(
            f"| {name} | {cell(peer, digits=digits)} | {cell(ours, digits=digits)} "
            f"| {cell(r, digits=2)} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run")
    parser.add_argument("--num_train", type=int, default=None)
    parser.add_argument("--subset_size", type=int, default=1000, help="|T'|")
    parser.add_argument("--quick", action="store_true", help="smoke setting")
    parser.add_argument("--output", default=None, help="markdown table (file)")
    parser.add_argument("--json", default=None, help="the numbers (file)")
    settings = parser.parse_args(argv)
    settings.warmup = not settings.quick
    if settings.quick:  # One round of 5 epochs (one estimate), no warm-up.
        settings.rounds, settings.epochs = 1, 5
        settings.num_train, settings.subset_size = 128, 64
    return settings


def main(argv=None):
    return bench_overhead.run_and_report(parse(argv), measure, table)


if __name__ == "__main__":
    main()
