"""The book build's kernel-message polling (``_ext/kernel_polling.py``)."""

import asyncio
import importlib.util
import time
from pathlib import Path
from queue import Empty

import pytest
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session

_spec = importlib.util.spec_from_file_location("kernel_polling", Path(__file__).parents[1] / "_ext" / "kernel_polling.py")
kernel_polling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kernel_polling)


def _pair(ctx):
    """A channel on an asyncio DEALER socket and the ROUTER that talks to it (over loopback TCP)."""
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"client")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    session = Session(key=b"")
    return AsyncZMQSocketChannel(dealer, session), router, session


def test_get_msg_in_slices_returns_messages_and_times_out():
    async def main():
        ctx = zmq.asyncio.Context()
        channel, router, session = _pair(ctx)
        t0 = time.monotonic()
        with pytest.raises(Empty):                                   # nothing sent: Empty after the timeout
            await kernel_polling.get_msg_in_slices(channel, timeout=1.2)
        waited = time.monotonic() - t0
        with pytest.raises(Empty):
            await kernel_polling.get_msg_in_slices(channel, timeout=0)
        await asyncio.sleep(0.2)                                     # let the connection settle
        session.send(router, "execute_reply", {"status": "ok"}, ident=[b"client"])
        msg = await kernel_polling.get_msg_in_slices(channel, timeout=5)
        channel.close()
        router.close()
        ctx.term()
        return waited, msg

    waited, msg = asyncio.run(main())
    assert 1.1 < waited < 2.0
    assert msg["msg_type"] == "execute_reply" and msg["content"] == {"status": "ok"}


class _MissedWakeUps:
    """A socket whose poll never wakes up early: it reports a waiting message only when its
    timeout runs out, as an asyncio poll does after a missed edge of ZeroMQ's descriptor."""

    def __init__(self):
        self.polls = []

    async def poll(self, timeout_ms):
        self.polls.append(timeout_ms)
        await asyncio.sleep(timeout_ms / 1000)
        return zmq.POLLIN


class _Channel:
    def __init__(self):
        self.socket = _MissedWakeUps()

    async def _recv(self):
        return {"msg_type": "execute_reply"}


def test_a_missed_wake_up_costs_one_slice_not_the_whole_timeout():
    channel = _Channel()
    t0 = time.monotonic()
    msg = asyncio.run(kernel_polling.get_msg_in_slices(channel, timeout=600))
    assert msg["msg_type"] == "execute_reply"
    assert time.monotonic() - t0 < 2 * kernel_polling.SLICE            # the original would wait 600 s
    assert channel.socket.polls == [int(kernel_polling.SLICE * 1000)]
    original = AsyncZMQSocketChannel.get_msg
    kernel_polling.install()
    try:
        assert AsyncZMQSocketChannel.get_msg is kernel_polling.get_msg_in_slices
    finally:
        AsyncZMQSocketChannel.get_msg = original
