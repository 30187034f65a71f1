"""Training on several processes: PyTorch's DistributedDataParallel, launched by torchrun.

    lstmlab train charlm --engine torch --nproc 2          # one machine, 2 processes (gloo)
    torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m lstmlab train charlm --engine torch --out runs/big   # on each of 2 machines

`--nproc N` starts N copies of the same command through torchrun's own launcher
(torch.distributed.launcher.elastic_launch: rendezvous on 127.0.0.1, no restarts), which
watches them: when one dies, it stops the others within a second and the command says which
rank stopped and how to resume. Each copy finds its place in the environment torchrun sets
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so a multi-machine launch by
`torchrun` itself runs the same code.

What each process (rank) does:
- It builds the task and the model with the same seed; DistributedDataParallel (gloo on the
  CPU, NCCL on GPUs) averages the gradients, so the weights stay identical on every rank.
- It takes its own contiguous share of every global batch (`--batch-size` is the global
  batch, which must divide by the number of processes), so the result does not depend on
  the number of processes beyond float rounding: the loss is normalised by the count of
  the whole batch (summed over the ranks), not by each share's, and truncated BPTT carries
  each share's state on its own rank.
- Rank 0 alone writes the run folder (configuration, metrics, checkpoints, the model,
  figures: each write atomic, as always), evaluates, and shows the progress bar; the
  others wait for its decisions (early stopping, the learning rate's plateau). A checkpoint
  holds the whole batch's carried state, gathered from the ranks, so `--resume` works with
  the same or another number of processes.
- Dropout draws its masks per rank (seeded by step and rank): with dropout, N processes
  do not repeat the masks of one.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from datetime import timedelta

import numpy as np

# how long a rank waits for the others in one collective before it gives up (rank 0's
# evaluation of the validation split runs while the others wait)
TIMEOUT_S = 1800
# how long a rank other than 0 that met a user's mistake waits for rank 0, which meets it too,
# to report it and exit (the launcher then stops the waiting rank)
FOLLOWER_GRACE_S = 30


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among those training together."""
    rank: int
    size: int
    local_rank: int

    @property
    def lead(self) -> bool:
        """Rank 0: the one that writes the run folder and evaluates."""
        return self.rank == 0

    def start(self, device) -> None:
        """Join the process group (gloo for the CPU, NCCL for CUDA), once per process."""
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=timedelta(seconds=TIMEOUT_S))

    def rows(self, batch_size: int) -> slice:
        """This rank's contiguous share of a global batch of `batch_size` sequences."""
        if batch_size % self.size:
            raise ValueError(f"--batch-size {batch_size} does not divide among {self.size} "
                             f"processes; choose a multiple of {self.size}")
        n = batch_size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    def shard(self, batch, y_batch_axis: int):
        """This rank's share of a time-major Batch (batch axis 1; y's batch axis as given:
        0 for CTC labels and a readout of the last step)."""
        rows = self.rows(batch.x.shape[1])

        def cut(a, axis):
            return None if a is None else a[(slice(None),) * axis + (rows,)]

        return dataclasses.replace(
            batch, x=cut(batch.x, 1), y=cut(batch.y, y_batch_axis), mask=cut(batch.mask, 1),
            lengths=cut(batch.lengths, 0), target_in=cut(batch.target_in, 1),
            target_lengths=cut(batch.target_lengths, 0))

    def sum(self, values):
        """The element-wise sum over the ranks of a 1-D tensor (in place; returned)."""
        import torch.distributed as dist

        dist.all_reduce(values)
        return values

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (any picklable object, sent between the ranks only)."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_state(self, arrays: list) -> list:
        """The whole batch's carried state from each rank's share: per array (L, B/N, H) ->
        (L, B, H), the shares in rank order."""
        import torch
        import torch.distributed as dist

        whole = []
        for a in arrays:
            t = torch.from_numpy(np.ascontiguousarray(a))
            parts = [torch.empty_like(t) for _ in range(self.size)]
            dist.all_gather(parts, t)
            whole.append(torch.cat(parts, dim=1).numpy())
        return whole

    def share_state(self, arrays: list) -> list:
        """This rank's share (axis 1) of a whole batch's carried state."""
        return [a[:, self.rows(a.shape[1])] for a in arrays]

    def stop(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def lost_contact(e: BaseException) -> bool:
    """Whether `e` is a rank's collective failing because another rank stopped (gloo's "Read
    error ... Connection reset by peer", NCCL's errors): the launcher reports the rank that
    stopped first, so the others need not."""
    name = type(e).__name__
    return name.startswith("Dist") or (isinstance(e, RuntimeError) and any(
        w in str(e) for w in ("gloo", "NCCL", "Connection reset", "Connection closed")))


def world() -> World | None:
    """This process's World when torchrun (or `--nproc`) started it as one of several; None
    for a process training alone."""
    size = os.environ.get("WORLD_SIZE", "").strip()
    if not size.isdigit() or int(size) <= 1:
        return None
    return World(int(os.environ["RANK"]), int(size), int(os.environ.get("LOCAL_RANK", "0")))


class RankFailed(RuntimeError):
    """A rank of a `--nproc` launch stopped: what the command says, one line; exit_code is
    the first failed rank's (2: a user's mistake, which that rank has already reported)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def launch(nproc: int, args: list[str]) -> None:
    """Run `python -m lstmlab ARGS` as `nproc` ranks on this machine through torchrun's
    launcher, and return when all have finished. Each rank gets the machine's cores divided
    among them (LSTMLAB_THREADS) unless the user chose a count. Raises RankFailed when one
    stops; the launcher has then stopped the others."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from ..threads import ENV, usable_cores

    if not os.environ.get(ENV) and not os.environ.get("OMP_NUM_THREADS"):
        os.environ[ENV] = str(max(1, usable_cores() // nproc))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=f"lstmlab-{uuid.uuid4().hex[:12]}", rdzv_backend="c10d",
                          rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    quiet = logging.getLogger("torch.distributed.elastic")
    level, quiet.level = quiet.level, logging.CRITICAL       # its own reports: ours replace them
    try:
        elastic_launch(config, sys.executable)("-m", "lstmlab", *args)
    except ChildFailedError as e:
        # the first to fail; on a tie, not one the launcher itself stopped (SIGTERM)
        def stopped_by_launcher(f):
            return f.exitcode == -15

        rank, failure = min(e.failures.items(),
                            key=lambda kv: (kv[1].timestamp, stopped_by_launcher(kv[1]), kv[0]))
        code = failure.exitcode
        how = f"was killed by {failure.signal_name()}" if code < 0 else f"exited with code {code}"
        others = ", ".join(str(r) for r, f in sorted(e.failures.items())
                           if r != rank and not stopped_by_launcher(f))
        raise RankFailed(f"rank {rank} of {nproc} {how}{f' (also failed: rank {others})' if others else ''}"
                         ", and the launcher stopped the others", 2 if code == 2 else 1) from None
    finally:
        quiet.level = level
