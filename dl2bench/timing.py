"""Honest clocks: the device is synchronised before every reading, so queued GPU work is
counted where it belongs, and warm-up is excluded by the caller starting a fresh span."""
from __future__ import annotations

import time

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued work on the device (a no-op on the CPU, whose ops run eagerly)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Stopwatch:
    """Accumulates synchronised wall time over spans: `with sw: ...` adds one span."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = 0.0
        self._t0 = None

    def start(self) -> None:
        synchronize(self.device)
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.device)
        span = time.perf_counter() - self._t0
        self.total += span
        self._t0 = None
        return span

    def __enter__(self) -> "Stopwatch":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SpanTimer:
    """One synchronised span in seconds: CUDA events on a GPU (the device's own clock, so the host
    launching ahead is not mistaken for work done), perf_counter elsewhere. Both start after a
    synchronize, so nothing queued earlier (warm-up, another span) is counted in this one."""

    def __init__(self, device: torch.device):
        self.device = device
        self.events = device.type == "cuda"

    def start(self) -> None:
        synchronize(self.device)
        if self.events:
            self._a = torch.cuda.Event(enable_timing=True)
            self._b = torch.cuda.Event(enable_timing=True)
            self._a.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.events:
            self._b.record()
            self._b.synchronize()
            return self._a.elapsed_time(self._b) / 1000.0
        synchronize(self.device)
        return time.perf_counter() - self._t0
