"""claude's long-lived mode: ``claude -p --input-format stream-json --output-format stream-json --verbose``.

Nothing is printed before the first user message; after it, the CLI prints the same stream-json lines
as a streaming one-shot run, ending with the ``result`` line that ``ClaudeBackend.parse_output`` reads
as it is. Closing stdin then ends the process.
"""

from __future__ import annotations

from typing import Any

from .protocol import Protocol, Step, dumps


def warm_argv(argv: list[str], at: int) -> list[str] | None:
    """The long-lived command line for the one-shot ``argv`` whose CLI is ``argv[at]``, or None.

    ``argv[:at]`` (a wrapper such as a sandbox) is kept as it is. Only ephemeral runs qualify.
    """
    tail = argv[at + 1:]
    if not tail or tail[0] != "-p" or "--no-session-persistence" not in tail or "--resume" in tail:
        return None
    if tail[1:3] == ["--output-format", "json"]:
        rest = ["--output-format", "stream-json", "--verbose"] + tail[3:]
    elif tail[1:4] == ["--output-format", "stream-json", "--verbose"]:
        rest = tail[1:]
    else:
        return None
    if "--input-format" in rest:
        return None
    return argv[:at + 1] + ["-p", "--input-format", "stream-json"] + rest


class ClaudeProtocol(Protocol):
    def start(self, prompt: str) -> Step:
        return Step(send=[dumps({"type": "user", "message": {"role": "user", "content": prompt}})])

    def receive(self, message: dict[str, Any], line: str, running: bool) -> Step:
        if not running:
            return Step()
        return Step(output=[line], done=message.get("type") == "result")
