"""Shared machinery for the loopback stubs of the vendor APIs (stdlib only).

A stub is an *app* object (one per vendor) served by :func:`serve`.  The app decides what each
request gets; this module does the HTTP/1.1 plumbing, the request log, the runtime knobs and
the command line.

Common behaviour of every stub:

* binds only to loopback (``127.0.0.1`` or ``::1``), port 0 picks a free one;
* modes: ``ok`` (canned ``reply``), ``echo`` (reply ``"echo: " + last user text``),
  ``401``, ``429``, ``500`` (vendor-shaped error JSON), ``hang`` (read the request, never
  answer), ``stall`` (send 200 SSE headers, then nothing), ``tool`` (a call of the CLI's shell
  tool running ``command``, in the vendor's wire shape, as long as the request offers that tool
  and holds no tool result yet; then the canned ``reply``);
* ``delay`` seconds are slept before answering;
* every request is appended to ``handle.requests`` as a summary dict (see :meth:`App.summarize`);
* control endpoints, for a stub running in another process: ``GET /__stub/health``,
  ``GET /__stub/requests``, ``POST /__stub/config {"mode","reply","delay","command"}``,
  ``POST /__stub/reset``.
"""

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MODES = ("ok", "echo", "401", "429", "500", "hang", "stall", "tool")
DEFAULT_COMMAND = "echo stub-tool-ran"
ECHO_PREFIX = "echo: "
# Request headers copied into the log (lower-case names).
LOGGED_HEADERS = (
    "user-agent", "content-type", "accept", "x-api-key", "authorization", "anthropic-version",
    "anthropic-beta", "x-app", "x-claude-code-session-id", "x-stainless-retry-count",
    "originator", "session-id", "thread-id", "x-codex-turn-metadata",
    "x-goog-api-key", "x-goog-api-client",
)


def words(text, n=3):
    """Split ``text`` into about ``n`` non-empty pieces that concatenate back to it."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)]


def estimate_tokens(obj):
    """A rough token count (4 characters per token) of a JSON-able object."""
    return max(1, len(json.dumps(obj, ensure_ascii=False)) // 4)


class App:
    """Vendor-specific behaviour; subclasses implement :meth:`post` and :meth:`summarize`."""

    name = "stub"

    def post(self, req, body):
        """Answer a POST; ``req`` is the :class:`Handler`, ``body`` the parsed JSON (or None)."""
        req.send_json(404, {"error": "not found"})

    def get(self, req):
        """Answer a GET/HEAD (default: 200 ``{}``)."""
        req.send_json(200, {})

    def summarize(self, body, path):
        """Derived fields logged with each JSON request (e.g. ``user_text``, ``n_messages``)."""
        return {}

    def error(self, status):
        """``(body, extra_headers)`` for an error mode."""
        return {"error": {"code": status, "message": "stub error %d" % status}}, {}

    def reply_text(self, state, summary):
        """The answer text for the current mode: canned reply or echo of the user text."""
        if state.mode == "echo":
            return ECHO_PREFIX + (summary.get("user_text") or "")
        return state.reply

    def offers_shell(self, body):
        """Whether the request offers the CLI's shell tool (only then may the model call it)."""
        return False

    def has_tool_result(self, body):
        """Whether the conversation already holds the result of a tool call."""
        return False

    def shell_call(self, state, body):
        """The shell command to ask for in this answer (tool mode, first round), else None."""
        if state.mode == "tool" and self.offers_shell(body) and not self.has_tool_result(body):
            return state.command
        return None


class State:
    """Mutable stub configuration and the request log, shared by all handler threads."""

    def __init__(self, mode, reply, delay, command=DEFAULT_COMMAND):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests = []
        self.configure(mode, reply, delay, command)

    def configure(self, mode=None, reply=None, delay=None, command=None):
        if mode is not None:
            mode = str(mode)
            if mode not in MODES:
                raise ValueError("unknown mode %r (choose from %s)" % (mode, ", ".join(MODES)))
            self.mode = mode
        if reply is not None:
            self.reply = str(reply)
        if delay is not None:
            self.delay = float(delay)
        if command is not None:
            self.command = str(command)


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 request handler: control endpoints, logging, mode handling, then the app."""

    protocol_version = "HTTP/1.1"
    server_version = "ClinvkStub/1.0"

    # -- plumbing -------------------------------------------------------------------------
    @property
    def app(self):
        return self.server.app

    @property
    def state(self):
        return self.server.state

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def start_sse(self):
        """Send 200 ``text/event-stream`` headers; the body follows in chunks."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def send_chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def wait_until_stopped(self):
        """Block (hang/stall modes) until the stub stops, then drop the connection."""
        self.state.stopping.wait()
        self.close_connection = True

    # -- dispatch -------------------------------------------------------------------------
    def do_HEAD(self):
        self.send_json(200, {})

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/__stub/health":
            return self.send_json(200, {"ok": True, "stub": self.app.name})
        if path == "/__stub/requests":
            with self.state.lock:
                return self.send_json(200, list(self.state.requests))
        self.app.get(self)

    def do_POST(self):
        path = urlsplit(self.path).path
        body = self.read_body()
        if path == "/__stub/config":
            try:
                self.state.configure(**{k: (body or {}).get(k)
                                        for k in ("mode", "reply", "delay", "command")})
            except ValueError as exc:
                return self.send_json(400, {"error": str(exc)})
            return self.send_json(200, {"mode": self.state.mode, "reply": self.state.reply})
        if path == "/__stub/reset":
            with self.state.lock:
                self.state.requests.clear()
            return self.send_json(200, {})
        self.log_request_summary(body)
        state = self.state
        if state.delay:
            state.stopping.wait(state.delay)
        if state.mode == "hang":
            return self.wait_until_stopped()
        if state.mode == "stall":
            self.start_sse()
            return self.wait_until_stopped()
        if state.mode in ("401", "429", "500"):
            err, headers = self.app.error(int(state.mode))
            return self.send_json(int(state.mode), err, headers)
        try:
            self.app.post(self, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_request_summary(self, body):
        parts = urlsplit(self.path)
        entry = {
            "ts": time.time(),
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": {k: self.headers[k] for k in LOGGED_HEADERS if k in self.headers},
            "mode": self.state.mode,
            "body": body,
        }
        if isinstance(body, dict):
            entry.update(self.app.summarize(body, parts.path))
        self.summary = entry
        with self.state.lock:
            self.state.requests.append(entry)
        log = self.server.log_file
        if log:
            with self.state.lock, open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({k: v for k, v in entry.items() if k != "body"}) + "\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Server6(_Server):
    address_family = socket.AF_INET6


class StubHandle:
    """A running stub: ``.port``, ``.url``, ``.requests``, ``.set_mode()``, ``.stop()``."""

    def __init__(self, server, thread):
        self._server = server
        self._thread = thread
        self.host = server.server_address[0]
        self.port = server.server_address[1]
        host = "[%s]" % self.host if ":" in self.host else self.host
        self.url = "http://%s:%d" % (host, self.port)

    @property
    def requests(self):
        """Summaries of the API requests received so far (control endpoints excluded)."""
        return self._server.state.requests

    @property
    def mode(self):
        return self._server.state.mode

    def set_mode(self, mode, reply=None, delay=None, command=None):
        """Change the mode (and optionally the reply text, the delay and the tool mode's shell
        command) for later requests."""
        self._server.state.configure(mode, reply, delay, command)

    def reset(self):
        """Forget the logged requests."""
        with self._server.state.lock:
            self._server.state.requests.clear()

    def stop(self):
        """Release hanging requests, stop serving and close the socket."""
        self._server.state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(app, mode="ok", reply="Hello from stub", port=0, host="127.0.0.1", delay=0.0,
          log_file=None, command=DEFAULT_COMMAND):
    """Start ``app`` on a loopback address in a daemon thread and return a :class:`StubHandle`."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError("stubs bind only to loopback, not %r" % host)
    cls = _Server6 if ":" in host else _Server
    server = cls((host, port), Handler)
    server.app = app
    server.state = State(mode, reply, delay, command)
    server.log_file = log_file
    thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                              name="%s-stub" % app.name, daemon=True)
    thread.start()
    return StubHandle(server, thread)


def main(app, argv=None):
    """Command line: run ``app`` until interrupted, printing ``listening on HOST:PORT``."""
    parser = argparse.ArgumentParser(description="Loopback stub of the %s API." % app.name)
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default) or ::1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", default="ok", choices=MODES)
    parser.add_argument("--reply", default="Hello from stub")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--command", default=DEFAULT_COMMAND, help="the shell command of tool mode")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    args = parser.parse_args(argv)
    handle = serve(app, args.mode, args.reply, args.port, args.host, args.delay, args.log,
                   args.command)
    print("listening on %s:%d" % (handle.host, handle.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run one of the vendor stubs instead")
