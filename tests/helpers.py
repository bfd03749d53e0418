"""Helpers shared by several test modules."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["finishes", "one_torch_thread"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Any:
    """One torch intra-op thread while a module's tests run (import this fixture into a test module or
    conftest to use it). On a small CPU shared with other processes, two threads spin-wait on each
    other and the detectors ran many times slower; one thread is predictable."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def finishes(call: Callable[[], Any], fifos: Iterable[Path] = (), seconds: float = 20.0) -> Any:
    """``call()``'s result, or a test failure when it does not return in time: a regression that
    opens a FIFO blocks forever, and must fail the test rather than hang the suite."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised in the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:  # give the stuck reader a writer (and at once EOF) so its thread ends
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"did not finish within {seconds} s (opened a FIFO?)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
