"""End a non-streaming run when its client hangs up.

WSGI tells a view nothing when the client leaves: a stream notices on its next write, but a
plain request would keep its CLI running until ``request_timeout_secs``. Under gunicorn the
request's socket is ``environ["gunicorn.socket"]``; one watcher thread per worker process waits
(epoll, no polling) for the peer to hang up on any watched socket and cancels that run.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

from flask import request

from ...service import CancelToken

# Peer hang-ups only: edge-triggered and without EPOLLIN, so pipelined bytes wake nobody.
EVENTS = select.EPOLLRDHUP | select.EPOLLET


class DisconnectWatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[socket.socket, CancelToken]] = {}
        self._epoll: select.epoll | None = None
        self._pid = 0

    def _poller(self) -> select.epoll:
        """The epoll and its thread, created on first use in each process (gunicorn forks workers)."""
        if self._epoll is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._watched = {}
            self._epoll = select.epoll()
            threading.Thread(target=self._run, args=(self._epoll,), name="clinvk-disconnect-watcher",
                             daemon=True).start()
        return self._epoll

    @contextmanager
    def watch(self, sock: socket.socket | None) -> Iterator[CancelToken]:
        """A token that is cancelled if the peer of ``sock`` hangs up while the block runs."""
        token = CancelToken()
        if sock is None:
            yield token
            return
        with self._lock:
            epoll = self._poller()
            fd = sock.fileno()
            self._watched[fd] = (sock, token)
            epoll.register(fd, EVENTS)
        try:
            yield token
        finally:
            with self._lock:
                self._watched.pop(fd, None)
                try:
                    epoll.unregister(fd)
                except OSError:
                    pass

    def _run(self, epoll: select.epoll) -> None:
        while True:
            for fd, _ in epoll.poll():
                with self._lock:
                    entry = self._watched.get(fd)
                if entry and _hung_up(entry[0]):
                    # cancel() waits for the CLI to end: not on this thread, which serves every request.
                    threading.Thread(target=entry[1].cancel, args=("the client disconnected",),
                                     daemon=True).start()


def _hung_up(sock: socket.socket) -> bool:
    """Whether the peer closed: a zero-byte peek. Rules out a reused fd or a stray event."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


_WATCHER = DisconnectWatcher()


def client_gone_token():
    """Context manager: a :class:`CancelToken` tied to the current request's client connection."""
    return _WATCHER.watch(request.environ.get("gunicorn.socket"))
