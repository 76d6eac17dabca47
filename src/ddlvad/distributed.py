"""Several processes, one run: training and scoring with PyTorch's own engine (torch.distributed).

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`session` turns them into a process group
(``nccl`` on CUDA, ``gloo`` on CPU). Without ``WORLD_SIZE`` (or with 1) nothing is set up
and every helper answers as the single process it is, so library code calls them freely.

Rank 0 (the *main* process) does all file I/O of a run; the others compute and wait for
it where they need its result (:func:`run_on_main`). See docs/distributed.md.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import UserError

T = TypeVar("T")


# ---------------------------------------------------------------------- who am I
def is_active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes of the run: the group's size, else ``$WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 without a group and without ``$RANK``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine (``$LOCAL_RANK``, 0 by default)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that writes files and logs (global rank 0)."""
    return rank() == 0


def device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


# ---------------------------------------------------------------------- the process group
@contextmanager
def session() -> Iterator[bool]:
    """Join the process group described by torchrun's variables for the ``with`` block.

    Yields True when a group of more than one process is active. Does nothing when
    ``WORLD_SIZE`` is unset or 1, or when a group already exists (it is then left open:
    whoever made it closes it).
    """
    wanted = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not wanted or (dist.is_available() and dist.is_initialized()):
        yield is_active()
        return
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} unset: start "
                        f"several processes with torchrun (`torchrun --nproc_per_node N -m ddlvad ...`)")
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    try:
        yield True
        dist.barrier()  # leave together: a rank tearing down gloo while another still talks aborts
    finally:
        dist.destroy_process_group()


def collective(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: run ``fn`` inside :func:`session` (a command that may run under torchrun)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with session():
            return fn(*args, **kwargs)
    return wrapper


def shared_error(message: str) -> UserError:
    """A :class:`UserError` that every rank raises alike: only rank 0 prints it (see cli.main)."""
    exc = UserError(message)
    exc.quiet = not is_main()  # type: ignore[attr-defined]
    return exc


# ---------------------------------------------------------------------- collectives
def barrier() -> None:
    if is_active():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not is_active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call ``fn`` on rank 0 only and hand its result to every rank. A :class:`UserError`
    there is raised on every rank (printed once), so no rank is left waiting."""
    if not is_active():
        return fn(*args, **kwargs)
    payload: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            payload = ("ok", fn(*args, **kwargs))
        except UserError as exc:
            payload = ("error", str(exc))
    kind, value = broadcast(payload)
    if kind == "error":
        raise shared_error(value)
    return value


@contextmanager
def local_main_first() -> Iterator[None]:
    """The block runs on each machine's local rank 0 first, then on the other ranks
    (e.g. filling a frame cache once, then reading it)."""
    if is_active() and local_rank() != 0:
        dist.barrier()
    yield
    if is_active() and local_rank() == 0:
        dist.barrier()


def all_sum(values: Sequence[float], on: torch.device | None = None) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    if not is_active():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=on or device())
    dist.all_reduce(t)
    return t.cpu().tolist()


def gather_list(obj: Any) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if not is_active():
        return [obj]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def gather_dicts(part: dict) -> dict:
    """The union of every rank's ``part`` on every rank (keys must not repeat across ranks)."""
    if not is_active():
        return dict(part)
    parts: list[dict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    out: dict = {}
    for p in parts:
        twice = set(out) & set(p or {})
        if twice:
            raise RuntimeError(f"gather_dicts: keys {sorted(twice)[:3]} came from two ranks")
        out.update(p or {})
    return out


# ---------------------------------------------------------------------- splitting work
def split_by_size(sizes: Sequence[int], parts: int) -> list[list[int]]:
    """Indices of ``sizes`` dealt to ``parts`` bins: largest first, each to the lightest bin
    (ties: lowest bin). Deterministic, disjoint, covers every index; bins keep input order."""
    bins: list[list[int]] = [[] for _ in range(parts)]
    load = [0] * parts
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        b = min(range(parts), key=lambda k: (load[k], k))
        bins[b].append(i)
        load[b] += sizes[i]
    return [sorted(b) for b in bins]


def my_share(sizes: Sequence[int]) -> list[int]:
    """The indices of ``sizes`` (e.g. videos by frame count) this rank works on."""
    return split_by_size(sizes, world_size())[rank()] if is_active() else list(range(len(sizes)))


def batch_slice(n: int, parts: int, index: int) -> range:
    """Positions ``[start, stop)`` of part ``index`` of ``n`` items cut in ``parts`` contiguous
    pieces whose sizes differ by at most one (the first ``n % parts`` get one more)."""
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return range(start, start + base + (index < extra))


# ---------------------------------------------------------------------- BatchNorm over all ranks
class _SumOverRanks(torch.autograd.Function):
    """``sum_r x_r`` on every rank; backward: the sum of every rank's output gradient, since
    each rank's loss depends on every input through the shared sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks).

    Torch's own :class:`torch.nn.SyncBatchNorm` runs on GPUs only; this one works on any
    device and backend (gloo on CPU). Its sums go through :class:`_SumOverRanks`, whose
    backward sums the gradients of every rank, so with DistributedDataParallel (which
    averages the ranks' gradients) the gradient equals that of one process holding the
    global batch. Same parameters and buffers (state-dict keys) as BatchNorm2d; eval mode and a
    single process behave exactly like it.
    """

    group: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_active()):
            return super().forward(x)
        self._check_input_dim(x)
        group = self.group if self.group is not None else dist.group.WORLD
        xf = x.float()                                                     # (B, C, H, W)
        local = torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([x.numel() / x.shape[1]])])
        sums = _SumOverRanks.apply(local, group)                           # (C + 1,)
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centred = xf - mean[None, :, None, None]
        var = _SumOverRanks.apply(centred.pow(2).sum((0, 2, 3)), group) / count  # biased, (C,)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / self.num_batches_tracked.item()) if self.momentum is None else self.momentum
                unbiased = var.detach() * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Make every BatchNorm2d of ``module`` use global-batch statistics (``train.sync_batchnorm``):
    torch's SyncBatchNorm on CUDA, :class:`GlobalBatchNorm2d` elsewhere. Parameters are
    shared, not copied, and state-dict keys do not change."""
    if not is_active():
        return module
    if next(module.parameters()).is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    group = dist.new_group(backend="gloo")  # apart from DDP's gradient all-reduces
    return _convert(module, group)


def _convert(module: nn.Module, group) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):  # also ddlvad.models.BatchNorm2d
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        new.group = group
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert(child, group))
    return module


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if is_active():
        for buf in module.buffers():
            dist.broadcast(buf, src=0)
