"""The bubblewrap sandbox: what a CLI run can and cannot reach, and how run.sandbox resolves."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from clinvk import sandbox
from clinvk.server import create_app

# A stand-in CLI that answers in claude's JSON format with what it could reach: one line per probe,
# "<probe> ok" or "<probe> denied".
PROBE_CLI = r"""#!/bin/sh
cat >/dev/null
try() { label=$1; shift; if "$@" >/dev/null 2>&1; then echo "$label ok"; else echo "$label denied"; fi; }
report=$(
  try read-own-home cat "$HOME/own.txt"
  try write-own-home sh -c 'echo x > "$HOME/written.txt"'
  try write-workdir sh -c 'echo x > "$PWD/written.txt"'
  try read-etc-hosts cat /etc/hosts
  try private-tmp sh -c 'echo x > /tmp/x && cat /tmp/x'
  try read-other-home cat "$PROBE_OTHER_HOME/secret.txt"
  try list-other-home ls "$PROBE_OTHER_HOME"
  try read-session-db cat "$PROBE_DB"
  try read-user-home-file cat "$PROBE_USER_FILE"
  try list-user-home ls "$PROBE_USER_HOME"
  try write-outside-workdir sh -c 'echo x > "$PROBE_OUTSIDE/escaped.txt"'
  try write-next-to-workdir sh -c 'echo x > "$PWD/../escaped.txt"'
  try write-var-tmp sh -c 'echo x > "$PROBE_VAR_TMP"'
  try write-usr sh -c 'echo x > "$PROBE_USR"'
  try read-shadow cat /etc/shadow
  try see-host-pids sh -c '[ "$(ls /proc | grep -c "^[0-9]")" -gt 20 ]'
  echo "home=$HOME"
)
escaped=$(printf '%s\n' "$report" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk '{printf "%s\\n", $0}')
printf '{"type":"result","subtype":"success","is_error":false,"result":"%s","session_id":"%s"}\n' \
  "$escaped" "0b3c5a1e-0000-4000-8000-$(date +%N | cut -c1-9)000"
"""

@pytest.fixture
def probe_cli(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "claude"
    cli.write_text(PROBE_CLI)
    cli.chmod(0o755)
    return cli


@pytest.fixture
def escapes():
    """Host paths outside every bind that a probe tries to write (removed again: the unconfined run
    of the same probe does write them)."""
    name = f"clinvk-sandbox-escaped-{uuid.uuid4().hex}"
    paths = {"PROBE_VAR_TMP": Path("/var/tmp") / name, "PROBE_USR": Path("/usr") / name}
    yield paths
    for path in paths.values():
        path.unlink(missing_ok=True)


@pytest.fixture
def user_home_file():
    """A file in the service user's real home directory (what an agent must not read)."""
    path = Path.home() / f".clinvk-sandbox-probe-{uuid.uuid4().hex}"
    path.write_text("service user's secret")
    yield path
    path.unlink(missing_ok=True)


def report(body: dict) -> dict[str, str]:
    assert body.get("exit_code") == 0, body
    lines = dict(line.rsplit(" ", 1) for line in body["output"].splitlines() if " " in line)
    lines["home"] = next(line[5:] for line in body["output"].splitlines() if line.startswith("home="))
    return lines


def test_a_sandboxed_cli_reaches_only_its_home_and_workdir(make_config, clinvk_home, probe_cli, user_home_file,
                                                           escapes, tmp_path):
    workdir, outside = tmp_path / "work", tmp_path / "outside"
    workdir.mkdir(), outside.mkdir()
    env = {"PROBE_DB": str(clinvk_home / "sessions.db"), "PROBE_USER_FILE": str(user_home_file),
           "PROBE_USER_HOME": str(Path.home()), "PROBE_OUTSIDE": str(outside),
           **{name: str(path) for name, path in escapes.items()}}
    config = make_config(run={"sandbox": "bwrap"}, backends={"claude": {"command": str(probe_cli), "env": env}})
    client = create_app(config).test_client()
    assert client.get("/health").json["sandbox"]["mode"] == "bwrap"

    first = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "a", "workdir": str(workdir)}).json
    other_home = clinvk_home / "homes" / first["session_id"]
    (other_home / "secret.txt").write_text("session A's transcript")
    env["PROBE_OTHER_HOME"] = str(other_home)

    body = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "b", "workdir": str(workdir)}).json
    seen = report(body)
    own_home = clinvk_home / "homes" / body["session_id"]
    assert seen["home"] == str(own_home)
    # what the run may do (so the denials below are the sandbox's, not a broken probe)
    for allowed in ("write-own-home", "write-workdir", "read-etc-hosts", "private-tmp"):
        assert seen[allowed] == "ok", (allowed, seen)
    assert (own_home / "written.txt").exists() and (workdir / "written.txt").exists()
    # what it may not
    for denied in ("read-other-home", "list-other-home", "read-session-db", "read-user-home-file", "list-user-home",
                   "write-outside-workdir", "write-var-tmp", "write-usr", "read-shadow", "see-host-pids"):
        assert seen[denied] == "denied", (denied, seen)
    # Next to a workdir under /tmp the write lands in the sandbox's private /tmp, never on the host.
    assert not (outside / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not any(path.exists() for path in escapes.values())

    # without a workdir, a sandboxed run gets a scratch directory of the state dir, never the server's own
    body = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "d"}).json
    assert report(body)["write-workdir"] == "ok"
    scratch = Path(client.get(f"/api/v1/sessions/{body['session_id']}").json["working_dir"])
    assert scratch.is_relative_to(clinvk_home) and (scratch / "written.txt").exists(), scratch
    assert not (Path.cwd() / "written.txt").exists()

    # the same CLI without the sandbox reaches all of it: the probe does detect access
    client = create_app(make_config(run={"sandbox": "off"},
                                    backends={"claude": {"command": str(probe_cli), "env": env}})).test_client()
    unconfined = report(client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "c",
                                                            "workdir": str(workdir)}).json)
    assert unconfined["read-other-home"] == unconfined["read-user-home-file"] == "ok", unconfined
    assert unconfined["write-outside-workdir"] == "ok"


def test_auto_falls_back_to_off_when_bwrap_cannot_run(tmp_path):
    status = sandbox.resolve("auto", path=str(tmp_path))  # no bwrap on this PATH
    assert not status.active and "bwrap is not installed" in status.reason
    with pytest.raises(sandbox.SandboxUnavailable, match="run.sandbox is bwrap but bwrap is not installed"):
        sandbox.resolve("bwrap", path=str(tmp_path))
    assert sandbox.resolve("off").to_dict() == {"mode": "off", "reason": "run.sandbox is off"}


def test_auto_falls_back_when_bwrap_fails(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    status = sandbox.resolve("auto", path=str(tmp_path))
    assert not status.active and "No permissions to creating new namespace" in status.reason


def test_health_says_runs_are_not_sandboxed(client):
    assert client.get("/health").json["sandbox"] == {"mode": "off", "reason": "run.sandbox is off"}


def test_install_roots(tmp_path):
    assert sandbox.install_roots("/usr/bin/node") == []
    assert sandbox.interpreter_root("/bin/sh", "/usr/bin") is None
    prefix = tmp_path / "npm"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib" / "pkg").mkdir(parents=True)
    (prefix / "lib" / "pkg" / "cli.js").write_text("#!/usr/bin/env node\n")
    (prefix / "bin" / "cli").symlink_to(prefix / "lib" / "pkg" / "cli.js")
    assert sandbox.install_roots(str(prefix / "bin" / "cli")) == [str(prefix)]
    # never the service user's whole home, even when the link crosses it
    home = Path.home()
    spread = sandbox.install_roots(str(home / ".no-such-bin" / "cli"))
    assert str(home) not in spread and all(p.startswith(str(home) + "/") for p in spread)


def test_sandbox_argv_has_no_new_session_and_hides_the_state_dir(tmp_path):
    from clinvk.backends import Invocation
    invocation = Invocation(["/usr/bin/true"], "", str(tmp_path / "work"), env={"PATH": os.environ["PATH"]})
    wrapped = sandbox.wrap(invocation, home=str(tmp_path / "state" / "homes" / "abc"), extra_rw=[])
    argv = wrapped.argv
    assert "--new-session" not in argv and "--die-with-parent" in argv
    assert argv[argv.index("--") + 1:] == ["/usr/bin/true"]
    bound = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")}
    assert str(tmp_path / "state") not in bound and str(tmp_path / "state" / "homes" / "abc") in bound
    assert "/etc/shadow" not in bound and str(Path.home()) not in bound
    assert json.dumps(argv)  # plain strings only
