"""Where the model runs and how many CPU threads it uses.

Both matter for speed more than anything else in this kit: on a busy 2-core
machine, two torch threads while another process used a core made a training
step 3-15x slower than one thread. Used by ``train.fit`` and the command
lines; taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from __future__ import annotations

import os

import torch

from .types import DeviceLike

MAX_DEFAULT_THREADS = 4  #: this model gains little beyond 4 CPU threads; more starve a notebook


def choose_device(device: DeviceLike = None, local_rank: int = 0) -> torch.device:
    """``device`` if given, else CUDA (this process's GPU under torchrun), else MPS, else CPU."""
    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_cpu_threads(processes: int = 1) -> int:
    """``min(physical cores, usable CPUs, 4)`` shared among ``processes``, at least 1.

    Physical, not logical, cores: two threads on one core's hyperthreads are
    slower than one. Usable CPUs (the affinity mask): under ``taskset -c 0`` or a
    container's CPU set, the machine's cores counted CPUs this process cannot use.
    """
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:  # psutil is optional; fall back to the CPUs this process may use
        cores = None
    cores = min(cores or usable_cpus(), usable_cpus())
    return max(1, min(cores, MAX_DEFAULT_THREADS) // max(1, processes))


def set_cpu_threads(threads: int | None = None, processes: int = 1) -> int:
    """Set torch's CPU thread count (``default_cpu_threads(processes)`` if None) and return it.

    This is process-wide (``torch.set_num_threads``); ``fit`` calls it when training on CPU.
    """
    threads = default_cpu_threads(processes) if threads is None else int(threads)
    if not 1 <= threads <= usable_cpus():  # 100,000 OpenMP threads crashed the process (segmentation fault)
        raise ValueError(f"threads must be from 1 to {usable_cpus()} (the CPUs this process may use), got {threads}")
    torch.set_num_threads(threads)
    return threads
