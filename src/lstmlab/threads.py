"""How many CPU threads a training uses, applied to every thread pool of the process.

    n = lstmlab.threads.configure()      # at the start of a training: the count it chose
    n = lstmlab.threads.configure(1)     # an explicit count (the CLI's --threads)

Left to their defaults, PyTorch's OpenMP pool and NumPy's OpenBLAS each start one thread per
core, and their idle threads spin (busy-wait) at every barrier instead of sleeping. Alone
that costs nothing; two such processes on the same cores spin while the thread they wait
for is not running: two torch trainings at once on 2 cores took 30-100x their time alone,
and on a machine already busy with other work even one training slowed down that much.

The count, the first of:
  1. the `threads` argument;
  2. the environment variable LSTMLAB_THREADS: a whole number >= 1, or `off` to leave
     PyTorch and the BLAS at their own defaults (lstmlab's behaviour before this module);
  3. OMP_NUM_THREADS, when it is a whole number: a launcher or the user has chosen already;
  4. the cores this process may use (os.sched_getaffinity), the default; but 1 for a
     model too small to share out (`work`, its multiply-adds per training step, below
     SMALL_WORK): sleeping threads wake at every product, and on the sine demo's model
     (32 units, batch 32) two of them took 32.6 s where one took 22.3 s, while at 256 units
     and batch 64 two took 28.0 s and one 36.2 s.

The count goes to PyTorch (`torch.set_num_threads`: now if torch is loaded, else when
`lstmlab.torch` is imported) and to the OpenMP pools loaded (threadpoolctl). OpenMP's idle
threads are told to sleep (OMP_WAIT_POLICY=PASSIVE; libgomp reads it once, when torch
loads, so only a process that has not loaded torch yet gets it): that turned the 30-100x
into 1.2-1.5x for two trainings on 2 cores (benchmarks/concurrent_training.py). NumPy's
OpenBLAS cannot be told to sleep once loaded (its OPENBLAS_THREAD_TIMEOUT is read when NumPy
is imported), so by default it gets one thread: the NumPy engine's matrices are small, and
under contention its second thread made a training 2-10x slower when other work shared the
cores; a chosen count (1-3 above) sets it too. The count does not depend on what else runs
on the machine, so neither do a run's numbers (PyTorch's results can differ in the last bits
between thread counts).
Whoever starts N trainings at once on C cores can give each LSTMLAB_THREADS=C//N (at least
1), so that no two threads share a core.
"""

from __future__ import annotations

import os
import sys

ENV = "LSTMLAB_THREADS"

_configured: int | None = None          # the count of the last configure(), for lstmlab.torch
# multiply-adds per training step below which one thread beats several sleeping ones
# (measured at 1.6 M, the sine demo, where one thread was 1.5x faster, and at 50 M, where it
# was 1.3x slower; lstmlab.train.loop.step_work counts them)
SMALL_WORK = 2_000_000
# a GOMP_SPINCOUNT at most this short counts as sleeping (idle_threads_sleep): at 30,000 spins
# the variant loops' batch parts gained as much as with OMP_WAIT_POLICY=PASSIVE
SHORT_SPIN = 30_000


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; all cores where the OS
    has no affinity call)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:               # macOS, Windows
        return os.cpu_count() or 1


def decide(threads: int | None = None, work: float | None = None) -> tuple[int | None, bool]:
    """(count, explicit): the count `configure` applies (None for LSTMLAB_THREADS=off) and
    whether it was chosen (argument, LSTMLAB_THREADS, OMP_NUM_THREADS) rather than derived
    from the cores. Raises ValueError for a bad argument or LSTMLAB_THREADS."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
        return threads, True
    raw = os.environ.get(ENV, "").strip()
    if raw.lower() == "off":
        return None, True
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{ENV} must be a whole number of threads >= 1, or off, got {raw!r}")
        return int(raw), True
    # OpenMP also allows lists ("4,2") for nested levels: those are left to it, not ours to read
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp), True
    if work is not None and work < SMALL_WORK:
        return 1, False
    return usable_cores(), False


def configure(threads: int | None = None, work: float | None = None) -> int:
    """Decide this process's thread count (see the module docstring) and apply it: to torch
    and the OpenMP pools at that count, to the BLAS pools at that count when it was chosen and
    at 1 otherwise. Returns the count, 0 when LSTMLAB_THREADS=off left the libraries alone.
    Call it again to change the count; calls after torch is loaded apply at once. `work`:
    the model's multiply-adds per training step, if known (see SMALL_WORK)."""
    global _configured
    count, explicit = decide(threads, work)
    if count is None:
        _configured = None
        return 0
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits={"openmp": count, "blas": count if explicit else 1})
    _configured = count
    apply_to_torch()
    return count


def idle_threads_sleep() -> bool:
    """Whether torch's OpenMP threads sleep when idle instead of spinning: OMP_WAIT_POLICY is
    PASSIVE (what `configure` sets for a training, before torch loads) or GOMP_SPINCOUNT at most
    SHORT_SPIN. libgomp reads both once, when torch loads; this reads them now.

    Threads of lstmlab's own that run beside torch's pool (the torch engine's variant loops,
    a part of the batch each) gain only then: after each of torch's parallel operations a
    spinning thread keeps a core busy for milliseconds, and on 2 cores the layernorm variant's
    forward+backward at (100, 32, 32, 128) took 41-46 ms in two parts against 31-42 ms in one;
    with the threads asleep, 31-33 ms in two parts against 38-48 ms in one."""
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        return True
    spin = os.environ.get("GOMP_SPINCOUNT", "").strip()
    return spin.isdigit() and int(spin) <= SHORT_SPIN


def apply_to_torch() -> None:
    """Give a loaded torch the count of the last `configure()`; nothing if none was made.
    `lstmlab.torch` calls it on import, for a training configured before torch was loaded."""
    if _configured is not None and "torch" in sys.modules:
        import torch

        torch.set_num_threads(_configured)
