"""Inference latency of a network: the median of a few timed forward passes.

The search measures every candidate, so the defaults are cheap (2 warm-up runs, 10 timed
runs: about half a second for MobileNetV2 1.0/224 at batch 1 on one CPU thread) and the
median keeps an occasional stall on a shared machine from moving the figure. On CPU the
default is one thread, as the MobileNet papers report single-core phone latency, and so
that figures do not depend on how many cores the machine happens to have.

The model is measured on a deep copy in eval mode on the requested device, so the
caller's model keeps its mode, device and parameters.
"""

from __future__ import annotations

import copy
import functools
import platform
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter, thread_time

import torch
from torch import nn

from mobilenet_search.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
# wall: elapsed time (perf_counter). thread: CPU time of the calling thread (thread_time), which on one
# CPU thread leaves out the time other processes hold the core: what a shared machine adds to wall time.
CLOCKS = ("wall", "thread")


@dataclass(frozen=True)
class Latency:
    """One latency measurement: ``ms`` is the median time of one forward pass of a batch,
    ``q1_ms`` and ``q3_ms`` the quartiles of the timed runs (their spread), ``device`` the
    hardware in words (``"cpu: Intel Xeon Processor (1 thread)"`` or the GPU's name).
    ``min_ms`` is the fastest run: on a shared machine the figure least moved by other load,
    which the latency table (:mod:`mobilenet_search.measure.latency_table`) can be built on.
    """

    ms: float
    q1_ms: float
    q3_ms: float
    device: str
    batch_size: int
    repeats: int
    min_ms: float | None = None

    def __str__(self) -> str:
        return f"{self.ms:.2f} ms (IQR {self.q1_ms:.2f}-{self.q3_ms:.2f}) on {self.device}, batch {self.batch_size}"


def resolve_device(device: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` for a requested device; ``"auto"`` is CUDA when available.

    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    True
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise UserError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but no CUDA GPU is available here; use cpu or auto")
    if match[1] is not None and int(match[1]) >= torch.cuda.device_count():
        raise UserError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


@functools.cache
def cpu_name() -> str:
    """The processor model, from /proc/cpuinfo where there is one, without trademark signs."""
    name = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next((line.split(":", 1)[1] for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown processor"
    return " ".join(re.sub(r"\((R|TM)\)", "", name, flags=re.IGNORECASE).split())


def describe_device(device: str, threads: int | None = 1) -> str:
    """The hardware in words, as :class:`Latency` records it: ``"cpu: AMD EPYC (1 thread)"`` or the GPU's name.

    ``device`` is a resolved device (see :func:`resolve_device`); ``threads`` None means torch's current setting.
    """
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    used = torch.get_num_threads() if threads is None else threads
    return f"cpu: {cpu_name()} ({used} thread{'s' if used > 1 else ''})"


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], *, device: str = "cpu", warmup: int = 2,
                    repeats: int = 10, threads: int | None = 1, clock: str = "wall") -> Latency:
    """Median latency of ``model`` on a random input of ``input_shape`` (batch first).

    On CPU it runs with ``threads`` intra-op threads (None keeps torch's current setting;
    the previous value is restored afterwards) and times each forward pass with
    ``time.perf_counter``, or with ``clock="thread"`` by the CPU time of the calling thread
    (``time.thread_time``; one thread only, where PyTorch runs the whole pass in the caller), which
    leaves out the time other processes hold the core. On CUDA it turns on ``cudnn.benchmark`` (restored afterwards)
    so the warm-up picks the fastest kernels, and times each pass with CUDA events.
    Runs under ``torch.inference_mode`` on a deep copy of the model in eval mode.

    >>> latency = measure_latency(nn.Conv2d(3, 8, 1), (1, 3, 32, 32), repeats=3)
    >>> latency.ms > 0, latency.batch_size, latency.repeats
    (True, 1, 3)
    """
    if not input_shape or any(not isinstance(size, int) or size < 1 for size in input_shape):
        raise ValueError(f"input_shape must be positive integers, batch first, got {input_shape}")
    if warmup < 0 or repeats < 1 or (threads is not None and threads < 1):
        raise ValueError(f"need warmup >= 0, repeats >= 1 and threads >= 1 or None, "
                         f"got warmup={warmup}, repeats={repeats}, threads={threads}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    device = resolve_device(device)
    if clock == "thread" and (device.startswith("cuda") or threads != 1):
        raise UserError(f"clock 'thread' times one CPU thread's work: it needs device cpu and threads 1, "
                        f"got device {device!r} and threads {threads}")
    probe = copy.deepcopy(model).to(device).eval()
    inputs = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    if device.startswith("cuda"):
        times, name = _time_cuda(probe, inputs, warmup, repeats), describe_device(device)
    else:
        previous = torch.get_num_threads()
        torch.set_num_threads(previous if threads is None else threads)
        try:
            used = torch.get_num_threads()
            times = _time_cpu(probe, inputs, warmup, repeats, thread_time if clock == "thread" else perf_counter)
        finally:
            torch.set_num_threads(previous)
        name = describe_device(device, used)
    # quantiles() needs two points; one run is its own spread.
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if repeats > 1 else (times[0],) * 3
    return Latency(statistics.median(times), q1, q3, name, input_shape[0], repeats, min(times))


def _time_cpu(model: nn.Module, inputs: torch.Tensor, warmup: int, repeats: int,
              clock: Callable[[], float] = perf_counter) -> list[float]:
    """Milliseconds of each of ``repeats`` forward passes by ``clock``, after ``warmup`` untimed ones."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(inputs)
        for _ in range(repeats):
            start = clock()
            model(inputs)
            times.append((clock() - start) * 1e3)
    return times


def _time_cuda(model: nn.Module, inputs: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` forward passes on the GPU, timed by CUDA events."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with torch.cuda.device(inputs.device), torch.inference_mode():
            for _ in range(warmup):
                model(inputs)
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(repeats)]
            for start, end in events:
                start.record()
                model(inputs)
                end.record()
            torch.cuda.synchronize()
            return [start.elapsed_time(end) for start, end in events]
    finally:
        torch.backends.cudnn.benchmark = previous
