"""CUDA graphs of the scheduler's step: one launch per step instead of a few hundred kernel launches.

At small batches a decoding step of a 24-layer model is launch-bound: the GPU waits for Python to
issue ~300 kernels (20 ms a step for musicgen-small at one stream, measured). A
:class:`StepGraphs` captures the step once for each size of a ladder (1, 2, 4, ... capacity) and
replays the smallest that holds the active slots: the slots past them are inactive, take no step
and keep their state. Capture needs a CUDA device and no active stream (warm-up steps run on the
slots); on the CPU the step runs eagerly. :class:`HostMasks` sends each step's "who takes a step"
mask to the device without waiting for the previous step to finish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class HostMasks:
    """A per-step boolean mask sent to the device without waiting for it.

    Two pinned host buffers are used in turn: the copy to the device is asynchronous, so a buffer is
    written again only after the copy that read it two steps ago has run (on the CPU, plain copies)."""

    def __init__(self, capacity: int, device: Any) -> None:
        import torch

        cuda = getattr(device, "type", str(device)) == "cuda"
        self._bufs = [torch.zeros(capacity, dtype=torch.bool, pin_memory=cuda) for _ in range(2)]
        self._events: list[Any] = [torch.cuda.Event() if cuda else None for _ in range(2)]
        self._turn = 0

    def upload(self, values: list[bool], target: Any) -> None:
        """``target[:len(values)] = values`` and False after them, asynchronously on the device."""
        buf, event = self._bufs[self._turn], self._events[self._turn]
        self._turn ^= 1
        if event is not None:
            event.synchronize()
        host = buf.numpy()
        host[: len(values)] = values
        host[len(values) :] = False
        target.copy_(buf, non_blocking=True)
        if event is not None:
            event.record()


class StepGraphs:
    """A CUDA graph of ``step(n)`` per batch size of a ladder (see the module doc)."""

    def __init__(self) -> None:
        self.graphs: dict[int, Any] = {}
        self.ladder: list[int] = []

    @staticmethod
    def ladder_for(capacity: int) -> list[int]:
        sizes, b = [], 1
        while b < capacity:
            sizes.append(b)
            b *= 2
        return [*sizes, capacity]

    def capture(self, step: Callable[[int], None], capacity: int, before: Callable[[], None],
                after: Callable[[], None]) -> str | None:
        """Capture ``step(b)`` for every ``b`` of the ladder; ``before`` makes every slot skip the step,
        ``after`` puts the slots back as they were (the warm-up ran on them). Returns None, or why the
        capture failed: then there are no graphs and every step runs eagerly."""
        import torch

        ladder = self.ladder_for(capacity)
        try:
            with torch.inference_mode():
                before()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for b in ladder:
                        step(b)  # warm-up: allocations and kernel choices happen outside the capture
                torch.cuda.current_stream().wait_stream(side)
                for b in ladder:
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        step(b)
                    self.graphs[b] = graph
        except Exception as exc:  # a driver or a kernel that cannot be captured
            self.graphs = {}
            try:
                torch.cuda.synchronize()
            finally:
                after()
            return f"{type(exc).__name__}: {exc}"
        after()
        self.ladder = ladder
        return None

    def run(self, n: int, step: Callable[[int], None]) -> int:
        """Replay the smallest graph that holds ``n`` slots (or run ``step(n)`` eagerly without graphs);
        returns the batch size that ran."""
        for b in self.ladder:
            if b >= n:
                self.graphs[b].replay()
                return b
        step(n)
        return n
