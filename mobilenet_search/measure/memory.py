"""How much memory this process can still take: what a candidate's estimated training memory is checked against.

:func:`mobilenet_search.arch.cost.training_memory` estimates what a network needs from its spec alone;
:func:`available_memory` says what the machine has, so a network that cannot fit is refused before it is
built (building a million-block network takes gigabytes and hours before training even starts).
"""

from __future__ import annotations

import resource
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: a container's memory.max and memory.current


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None  # "max" means no limit


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_left() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still leaves this process, or None without such a limit."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        used = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        used = 0
    return max(0, limit - used)


def available_memory(device: str = "cpu") -> int | None:
    """Bytes this process can still allocate on ``device``; None where the machine does not say.

    On a CUDA device, the GPU's free memory (``torch.cuda.mem_get_info``). On the CPU, the least of the
    memory the system can give without swapping (``MemAvailable`` in ``/proc/meminfo``), what the cgroup
    leaves (``memory.max - memory.current``, in a container) and what ``ulimit -v`` leaves.
    """
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    limits = [_meminfo("MemAvailable"), _address_space_left()]
    cgroup_max, cgroup_used = _read_int(CGROUP / "memory.max"), _read_int(CGROUP / "memory.current")
    if cgroup_max is not None and cgroup_used is not None:
        limits.append(max(0, cgroup_max - cgroup_used))
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None
