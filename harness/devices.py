"""Where and how a method's torch code runs: the device its ``device`` option names, and its CPU threads
(torch is imported only when asked)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from recbench.errors import ConfigError


def resolve_device(name: str, owner: str) -> Any:
    """``auto``: CUDA when torch sees a GPU, else CPU; any other name must be a usable torch device."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"{owner}: device {name!r} is not a torch device ({exc}); use 'auto', 'cpu' or 'cuda'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{owner}: device {name!r} was asked for but torch sees no GPU; use device=auto or cpu.")
    return device


@contextmanager
def torch_threads(n: int) -> Iterator[Any]:
    """Run the block with ``n`` torch CPU threads (small tensors train fastest on one), restored after; yields torch."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield torch
    finally:
        torch.set_num_threads(previous)
