"""The runner on plain shell commands: stdin, deadlines, process groups, bounded output."""

from __future__ import annotations

import os
import threading

import pytest

from clinvk import runner
from clinvk.backends import Invocation
from clinvk.runner import RunningProcess, StartError
from tests.helpers import wait_gone


def run(script: str, stdin: str = "", timeout: float = 10.0) -> RunningProcess:
    return RunningProcess(Invocation(["/bin/sh", "-c", script], stdin), dict(os.environ), timeout)


def test_prompt_arrives_on_stdin_byte_for_byte():
    prompt = "--help\n'\"ünïcödé\"'\x00end" + "y" * 400_000
    process = run("cat", prompt)
    outcome = process.collect()
    process.close()
    assert outcome.exit_code == 0 and outcome.stdout == prompt


def test_stdout_and_stderr_are_read_without_deadlock():
    process = run("head -c 3000000 /dev/zero | tr '\\0' e >&2; echo done")
    outcome = process.collect()
    process.close()
    assert outcome.stdout == "done\n" and len(outcome.stderr) == runner.MAX_STDERR_BYTES


def test_own_process_group():
    process = run("sleep 5")
    assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
    process.close()
    assert wait_gone(process.pid, within=5)


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "child"
    process = run(f"sleep 100 & echo $! > {pidfile}; trap '' TERM; sleep 100", timeout=0.5)
    outcome = process.collect()
    process.close()
    assert outcome.timed_out and outcome.exit_code == -1 and "timed out" in outcome.cancelled
    assert wait_gone(int(pidfile.read_text()), within=5)


def test_exited_cli_with_a_child_holding_the_pipe_does_not_hang(tmp_path):
    pidfile = tmp_path / "child"
    process = run(f"sleep 100 & echo $! > {pidfile}; echo answer", timeout=30)
    outcome = process.collect()
    process.close()
    assert outcome.stdout == "answer\n" and outcome.exit_code == 0 and not outcome.timed_out
    assert wait_gone(int(pidfile.read_text()), within=5)  # and the leftover child went with it


@pytest.mark.parametrize("read", ["collect", "lines"])
def test_a_cli_that_closes_its_output_and_runs_on_is_ended_at_its_deadline(tmp_path, read):
    pidfile = tmp_path / "child"
    process = run(f"sleep 100 >/dev/null 2>&1 & echo $! > {pidfile}; echo answer; exec >&- 2>&-; sleep 100",
                  timeout=1)
    if read == "collect":
        outcome = process.collect()
    else:
        assert [line for line in process.lines(keepalive=60) if line is not None] == ["answer"]
        outcome = process.outcome()
    process.close()
    assert outcome.timed_out and outcome.exit_code == -1
    assert wait_gone(process.pid, int(pidfile.read_text()), within=5)


def test_output_is_bounded(monkeypatch):
    monkeypatch.setattr(runner, "MAX_STDOUT_BYTES", 100_000)
    process = run("yes")
    outcome = process.collect()
    process.close()
    assert outcome.truncated and outcome.exit_code == -1 and "output exceeded" in outcome.cancelled
    assert len(outcome.stdout) <= 100_000


def test_lines_with_keepalive_ticks():
    process = run("echo one; sleep 0.5; echo two; printf three")
    items = list(process.lines(keepalive=0.1))
    outcome = process.outcome()
    process.close()
    assert [i for i in items if i is not None] == ["one", "two", "three"]
    assert items.count(None) >= 2 and outcome.exit_code == 0


def test_terminate_from_another_thread():
    process = run("sleep 100")
    threading.Timer(0.2, process.terminate, args=("cancelled by test",)).start()
    outcome = process.collect()
    process.close()
    assert outcome.exit_code == -1 and outcome.cancelled == "cancelled by test" and not outcome.timed_out


def test_terminate_all_ends_every_live_run():
    processes = [run("sleep 100") for _ in range(3)]
    assert runner.terminate_all("shutdown test") >= 3
    for process in processes:
        assert process.collect().cancelled == "shutdown test"
        process.close()


def test_missing_executable_is_a_start_error():
    with pytest.raises(StartError, match="cannot start /no/such/cli"):
        RunningProcess(Invocation(["/no/such/cli"], ""), {}, 5)


def test_close_is_idempotent_and_reports_once():
    calls = []
    process = run("true")
    process.on_close = lambda: calls.append(1)
    process.collect()
    process.close()
    process.close()
    assert calls == [1]
