"""Sphinx extension for the book build: wait for kernel messages in short slices.

The site build executes each notebook through nbclient, which waits for the kernel's
messages with ``await socket.poll(timeout)`` on asyncio ZeroMQ sockets. Now and then
the wake-up for a message that has arrived is missed (ZeroMQ's file descriptor is
edge-triggered, and a missed edge is a known hazard of event-loop integration; see
pyzmq issues #1558 and #2173, nbclient #312). The poll then returns only when its
timeout runs out, finds the message, and execution goes on as if nothing happened:
the notebook has simply stood still for up to the whole cell timeout (600 s here).
In one build on the book's machine two notebooks stood still like this (one for the
full 600 s, one for minutes until the build was stopped).

This extension replaces ``AsyncZMQSocketChannel.get_msg`` with a version that polls in
slices of at most ``SLICE`` seconds until the caller's timeout, so a missed wake-up costs
at most one slice. The test run (pytest with nbval) uses jupyter_client's blocking client,
which polls without an event loop, and needs none of this.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from jupyter_client.channels import AsyncZMQSocketChannel

SLICE = 0.5          # seconds: the longest a missed wake-up can delay a message


async def get_msg_in_slices(self: AsyncZMQSocketChannel, timeout: float | None = None) -> dict[str, Any]:
    """Like ``AsyncZMQSocketChannel.get_msg``: the next message, or ``Empty`` after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE if deadline is None else min(SLICE, max(0.0, deadline - time.monotonic()))
        if await self.socket.poll(int(left * 1000)):
            return await self._recv()
        if deadline is not None and time.monotonic() >= deadline:
            raise Empty


def install() -> None:
    AsyncZMQSocketChannel.get_msg = get_msg_in_slices  # type: ignore[method-assign]


def setup(app) -> dict:
    install()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
