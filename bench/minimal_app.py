#!/usr/bin/env python3
"""The floor of a Flask + gunicorn server that runs a CLI per request: the baseline bench/peers.py
measures clinvk against (its "minimal Flask app" row).

    python3 bench/minimal_app.py --port 8099 --workers 1 --threads 64 -- /path/to/claude -p --output-format json

One OpenAI-shaped route, ``POST /openai/v1/chat/completions`` (and ``/api/v1/prompt``, same body
handling): parse the JSON body, take the last message's text (or ``prompt``), spawn the command with
it on stdin (own session, as clinvk does), answer the CLI's ``result`` as a chat completion. No
validation, isolation, limits, logging or metrics — what is left is Flask, gunicorn and the spawn.

gunicorn runs with the options ``clinvk serve`` gives it (:func:`clinvk.serve.gunicorn_options` of
the default config: gthread, timeouts, keep-alive, no access log), without clinvk's hooks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from flask import Flask, jsonify, request
from gunicorn.app.base import BaseApplication

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def create_app(argv: list[str]) -> Flask:
    app = Flask(__name__)

    def run(prompt: str):
        done = subprocess.run(argv, input=prompt.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True, check=False)
        if done.returncode != 0:
            return jsonify({"error": {"message": done.stderr.decode(errors="replace")}}), 502
        text = json.loads(done.stdout)["result"]
        return jsonify({"object": "chat.completion",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}]})

    @app.post("/openai/v1/chat/completions")
    def chat():
        return run(request.get_json()["messages"][-1]["content"])

    @app.post("/api/v1/prompt")
    def prompt():
        return run(request.get_json()["prompt"])

    @app.get("/health")
    def health():
        return {"status": "ok"}

    return app


class MinimalApplication(BaseApplication):
    def __init__(self, app: Flask, options: dict):
        self.app, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.app


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict:
    """clinvk serve's gunicorn options for the default config, without its hooks."""
    from clinvk.config import Config
    from clinvk.serve import gunicorn_options as clinvk_options

    config = Config()
    config.server.host, config.server.port = host, port
    config.server.workers, config.server.threads = workers, threads
    return {key: value for key, value in clinvk_options(config).items() if not callable(value)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("command", nargs="+", help="the CLI command line; the prompt goes to its stdin")
    args = parser.parse_args()
    options = gunicorn_options(args.host, args.port, args.workers, args.threads)
    sys.argv = sys.argv[:1]  # gunicorn parses sys.argv
    MinimalApplication(create_app(args.command), options).run()


if __name__ == "__main__":
    main()
