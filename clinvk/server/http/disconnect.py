"""End a run when its client hangs up, whether the response is a plain answer or a stream.

WSGI tells a view nothing when the client leaves: a stream would notice only on its next write (a
keep-alive tick, 15 s by default, or longer), and a plain request would keep its CLI running until
``request_timeout_secs``. Under gunicorn the request's socket is ``environ["gunicorn.socket"]``
(behind nginx: the proxy's upstream connection, which nginx closes when its client leaves); one
watcher thread per worker process waits (epoll, no polling) for the peer to hang up on any watched
socket and calls that request's cancel function.

A kept-alive connection stays registered between its requests (the kernel drops a closed socket
from the epoll set by itself): a request only swaps the cancel function under a lock, so the
common case costs no system call.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from flask import request

from ...service import CancelToken

# Peer hang-ups only: edge-triggered and without EPOLLIN, so pipelined bytes wake nobody.
EVENTS = select.EPOLLRDHUP | select.EPOLLET
REASON = "the client disconnected"

Cancel = Callable[[str], None]


class DisconnectWatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[socket.socket, Cancel]] = {}
        self._registered: dict[int, socket.socket] = {}  # fd -> the socket epoll holds it for
        self._signalled: set[int] = set()  # registered fds whose hang-up event came while none was watched
        self._epoll: select.epoll | None = None
        self._pid = 0

    def _poller(self) -> select.epoll:
        """The epoll and its thread, created on first use in each process (gunicorn forks workers)."""
        if self._epoll is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._watched = {}
            self._registered = {}
            self._signalled = set()
            self._epoll = select.epoll()
            threading.Thread(target=self._run, args=(self._epoll,), name="clinvk-disconnect-watcher",
                             daemon=True).start()
        return self._epoll

    def add(self, sock: socket.socket | None, cancel: Cancel) -> Callable[[], None]:
        """Call ``cancel(reason)`` if the peer of ``sock`` hangs up; returns the (idempotent) function
        that stops watching, to be called before the socket is closed or reused."""
        if sock is None:
            return lambda: None
        with self._lock:
            epoll = self._poller()
            fd = sock.fileno()
            self._watched[fd] = (sock, cancel)
            if self._registered.get(fd) is not sock:  # a new connection (or a new socket on a reused fd)
                self._register(epoll, fd)
                self._registered[fd] = sock
                self._signalled.discard(fd)
            elif fd in self._signalled:
                # The edge-triggered event fired between two requests: it will not fire again.
                self._signalled.discard(fd)
                self._cancel_if_gone(sock, cancel)

        def forget() -> None:
            with self._lock:
                if self._watched.get(fd, (None, None))[1] is cancel:
                    del self._watched[fd]

        return forget

    @staticmethod
    def _register(epoll: select.epoll, fd: int) -> None:
        try:
            epoll.register(fd, EVENTS)
        except FileExistsError:  # the fd's previous socket was dup'ed elsewhere and is still held
            epoll.modify(fd, EVENTS)

    @contextmanager
    def watch(self, sock: socket.socket | None) -> Iterator[CancelToken]:
        """A token that is cancelled if the peer of ``sock`` hangs up while the block runs."""
        token = CancelToken()
        forget = self.add(sock, token.cancel)
        try:
            yield token
        finally:
            forget()

    def _run(self, epoll: select.epoll) -> None:
        while True:
            for fd, _ in epoll.poll():
                with self._lock:
                    entry = self._watched.get(fd)
                    if entry is None and fd in self._registered:
                        self._signalled.add(fd)
                if entry:
                    self._cancel_if_gone(*entry)

    @staticmethod
    def _cancel_if_gone(sock: socket.socket, cancel: Cancel) -> None:
        if _hung_up(sock):
            # cancel() waits for the CLI to end: not on this thread, which serves every request.
            threading.Thread(target=cancel, args=(REASON,), name="clinvk-client-gone", daemon=True).start()


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


def on_client_gone(cancel: Cancel) -> Callable[[], None]:
    """Call ``cancel(reason)`` when the current request's client hangs up, until the returned
    function is called (a stream: when its response is closed)."""
    return _WATCHER.add(request.environ.get("gunicorn.socket"), cancel)
