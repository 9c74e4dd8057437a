"""Training throughput: ``fit`` end to end against the bare model step, in one run.

The bare step is what ``fit`` cannot do without: forward, the card's loss,
backward, gradient clipping and the Adam step on a batch already in memory.
``fit`` adds batch gathering, the NaN guard, the per-epoch validation, the
checkpoints and the history. Target: fit end to end >= 0.9 of the bare step.

    PYTHONPATH=. python benchmarks/bench_train.py [--threads 1] [--segments 2048]

CPU: batch 256 fp32, thread count pinned (default 1) and printed.
GPU (when CUDA is available): batch 256 and 4096, bf16 autocast, channels_last,
data on the device, as fit does it. Two fit figures each: "loop" (no
validation, no files) and "end to end" (10% validation set, run folder with
last.pt/best.pt/history at fit's default ``checkpoint_every_s``: one epoch
here, so its one save at the end is counted whole, more than a long run pays
per epoch). A last line times one save of last.pt (weights + Adam state) and
says what it costs at the default interval. Each figure is the best of
``--repeats`` runs, bare step and fit alternating, so load on a shared
machine hits both alike. On CPU the figures are also given per CPU-second of
this process (``time.process_time``): with one thread that is what the code
costs, whatever other processes do to the wall clock. Under 2 minutes on an
H100/H200.
"""

import argparse
import contextlib
import os
import tempfile
import time

import numpy as np
import torch

from musicvae_course.core.checkpoint import save_checkpoint
from musicvae_course.core.data import PianoRollDataset
from musicvae_course.core.model import MusicVAE, vae_loss
from musicvae_course.core.seeding import seed_everything
from musicvae_course.train import TrainConfig, fit

TARGET_RATIO = 0.9


def synthetic_segments(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 88, 32)`` bool at about the corpus' density (2.5% of cells on)."""
    rng = np.random.default_rng(seed)
    rolls = np.zeros((n, 88, 32), bool)
    pitches = rng.integers(30, 70, size=(n, 3, 8))  # 3 voices, 8 notes of 3 steps each
    for note in range(8):
        for step in range(3):
            rolls[np.arange(n)[:, None], pitches[:, :, note], note * 4 + step] = True
    return rolls


def bare_step_rate(model, x, steps, amp_dtype):
    """Samples/s of forward + loss + backward + clip + Adam on one prepared batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=x.device.type == "cuda" or None)  # as fit makes it
    autocast = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    model.train()

    def step():
        with autocast:
            logits, mu, log_var = model.forward_logits(x)
        loss = vae_loss(logits, x, mu, log_var, beta=0.5, free_bits=0.5)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):  # warm-up: allocation, kernel choice
        step()
    with Clock(x.device) as clock:
        for _ in range(steps):
            step()
    return clock.rates(steps * len(x))


def fit_rate(model, train, val, batch_size, device, with_files, threads):
    """Samples/s of one ``fit`` epoch, clocked around the whole call."""
    with tempfile.TemporaryDirectory() as out_dir:
        with Clock(device) as clock:
            fit(
                model,
                train,
                val,
                epochs=1,
                batch_size=batch_size,
                device=device,
                threads=threads,
                out_dir=out_dir if with_files else None,
                progress=False,
            )
        return clock.rates(len(train))


class Clock:
    """Wall-clock and process CPU seconds of a block (the GPU synchronised at both ends)."""

    def __init__(self, device):
        self.device = device

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self):
        self._sync()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, samples):
        """(samples per wall second, samples per CPU second)."""
        return samples / self.wall, samples / self.cpu


def save_cost(model):
    """Seconds to write last.pt as fit does (weights + Adam state, fsynced) and its size in MB."""
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 1, 88, 32, device=next(model.parameters()).device))[0].sum().backward()
    optimizer.step()  # Adam's moments exist: the file has its real size
    state = {"epoch": 1, "optimizer": optimizer.state_dict(), "history": []}
    with tempfile.TemporaryDirectory() as out_dir:
        path = f"{out_dir}/last.pt"
        times = []
        for _ in range(3):
            start = time.perf_counter()
            save_checkpoint(model, path, training_state=state)
            times.append(time.perf_counter() - start)
        return min(times), os.path.getsize(path) / 1e6


def compare(label, device, batch_size, n_segments, repeats, amp_dtype, threads):
    seed_everything()
    segments = synthetic_segments(n_segments + n_segments // 10)
    train, val = PianoRollDataset(segments[:n_segments]), PianoRollDataset(segments[n_segments:])
    x = torch.as_tensor(segments[:batch_size], dtype=torch.float32).unsqueeze(1).to(device)
    model = MusicVAE().to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    steps = n_segments // batch_size
    bare, loop, end_to_end = [], [], []
    for _ in range(repeats):
        bare.append(bare_step_rate(model, x, steps, amp_dtype))
        loop.append(fit_rate(model, train, None, batch_size, device, False, threads))
        end_to_end.append(fit_rate(model, train, val, batch_size, device, True, threads))
    clocks = [(0, "samples/s")] + ([(1, "samples per CPU-second")] if device.type == "cpu" else [])
    for column, unit in clocks:
        best = max(rate[column] for rate in bare)
        fit_loop = max(rate[column] for rate in loop)
        fit_all = max(rate[column] for rate in end_to_end)
        print(
            f"{label} batch {batch_size}, {unit}: bare step {best:,.0f} | "
            f"fit loop {fit_loop:,.0f} ({fit_loop / best:.2f}x) | "
            f"fit end to end {fit_all:,.0f} ({fit_all / best:.2f}x) | "
            f"target >= {TARGET_RATIO:.2f}x"
        )
    seconds, megabytes = save_cost(model)
    every = TrainConfig().checkpoint_every_s
    epoch_s = n_segments / max(rate[0] for rate in bare)
    print(
        f"{label}: one save of last.pt ({megabytes:.0f} MB) takes {seconds:.2f} s: {seconds / every:.1%} of the run at "
        f"checkpoint_every_s={every:g} (fit's default); saved after every {epoch_s:.0f}-s epoch it would be "
        f"{seconds / epoch_s:.1%}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (pinned)")
    parser.add_argument("--segments", type=int, default=2048, help="CPU training segments")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads={torch.get_num_threads()}")
    if not args.no_cpu:
        compare("cpu fp32", torch.device("cpu"), 256, args.segments, args.repeats, None, args.threads)
    if not torch.cuda.is_available():
        print("GPU: none on this machine, so the GPU figures (batch 256 and 4096, bf16) are not measured in this run")
    else:
        device = torch.device("cuda")
        print(f"GPU: {torch.cuda.get_device_name(device)}")
        for batch_size, n_segments in ((256, 256 * 100), (4096, 4096 * 40)):
            compare("cuda bf16", device, batch_size, n_segments, args.repeats, torch.bfloat16, args.threads)


if __name__ == "__main__":
    main()
