"""Decode latency on CPU: one z (a widget update) and a batch of 8.

Prints the kit's figure beside its target (5 ms for one z, the course issue's
budget for the model part of a slider update) and the ratio. Threads are
pinned: on a busy 2-core machine two torch threads ran 3-15x slower than one.

    python benchmarks/bench_decode.py [--threads 1] [--repeats 200]
"""

import argparse
import statistics
import time

import torch

from musicvae_course.core.model import MusicVAE
from musicvae_course.core.seeding import seed_everything

TARGET_ONE_MS = 5.0


def time_decode(model, batch, repeats):
    z = torch.randn(batch, model.latent_dim)
    times = []
    with torch.inference_mode():
        for _ in range(10):  # warm-up: first calls allocate and pick kernels
            model.decode(z)
        for _ in range(repeats):
            start = time.perf_counter()
            model.decode(z)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), statistics.quantiles(times, n=10)[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything()
    model = MusicVAE().eval()
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, device=cpu")
    for batch in (1, 8):
        median, p90 = time_decode(model, batch, args.repeats)
        line = f"decode batch {batch}: median {median:.2f} ms, p90 {p90:.2f} ms"
        if batch == 1:
            line += f" | target {TARGET_ONE_MS:.1f} ms | target/kit = {TARGET_ONE_MS / median:.1f}x"
        else:
            line += f" | {median / batch:.2f} ms per z"
        print(line)


if __name__ == "__main__":
    main()
