"""The container image (deploy/Containerfile), built with podman and run as README tells users to.

- built from deploy/Containerfile with the CLIs installed from npm inside the build; the base images
  are local stand-ins made from the Debian archive (scripts/build-base-images.sh: no image registry
  is reachable here), passed through the Containerfile's PYTHON_IMAGE / NODE_IMAGE arguments;
- `/health` answers from the host through a published port; gunicorn runs as user 10001, HOME is
  the writable named volume; the image's HEALTHCHECK passes;
- the genuine claude, codex and gemini inside the container reach loopback stubs of their vendor
  APIs on the host (host networking) and answer; their sessions go on after a container restart on
  the same volume (the CLI resumed: the stub sees the first turn again);
- `podman stop` with runs in flight: the container exits 0 within the documented stop timeout,
  no process is left; tini (PID 1) reaps the orphans a CLI leaves behind;
- bubblewrap inside the container, as user 10001: what works and what does not (README says which).

podman, runc and debootstrap come from scripts/test.sh; a missing tool fails, never skips. The first
build on a machine takes several minutes (README: "Container"); later ones reuse podman's cache.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
import yaml

from tests import realcli
from tests.server_process import free_port
from tests.stubs import anthropic_stub, gemini_stub, openai_responses_stub
from tests.test_deploy import tool, wait_until

# The first test waits for the image: minutes the first time on a machine (pytest-timeout is 300 s).
pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/clinvk:test"
HOME = "/home/clinvk"  # the image's HOME, where README mounts the volume
USER_ID = 10001
STUBS = {"claude": anthropic_stub, "codex": openai_responses_stub, "gemini": gemini_stub}
# README's `--stop-timeout`: above the shutdown grace + 5 s (CLINVK_SERVER__SHUTDOWN_GRACE_SECS, 10 s in
# deploy/Containerfile), by when clinvk has ended the runs and exited; the engine SIGKILLs (exit 137) after it.
STOP_TIMEOUT = 20
# What this machine's engine needs (README, "Container"): runc, as crun refuses hybrid cgroups;
# limits it can set, as its defaults cannot be raised here.
ENGINE_FLAGS = ["--runtime", "runc"]
RUN_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([tool("podman"), *ENGINE_FLAGS, *args], capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}: rc {done.returncode}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def image() -> str:
    """deploy/Containerfile built on the local base images (cached by podman between runs)."""
    tool("debootstrap")
    tool("runc")
    bases = subprocess.run(["bash", str(ROOT / "scripts" / "build-base-images.sh")], capture_output=True,
                           text=True, timeout=1800)
    assert bases.returncode == 0, bases.stderr[-3000:]
    args = dict(line.split("=", 1) for line in bases.stdout.split())
    previous = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    # --format docker: the OCI format has no HEALTHCHECK.
    podman("build", *RUN_FLAGS, "--format", "docker", "-f", str(ROOT / "deploy" / "Containerfile"),
           "--build-arg", f"PYTHON_IMAGE={args['PYTHON_IMAGE']}", "--build-arg", f"NODE_IMAGE={args['NODE_IMAGE']}",
           "-t", IMAGE, str(ROOT), timeout=1800)
    if previous and previous != podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip():
        # The image of an earlier code version, with its own layers (not the cached shared ones).
        podman("rmi", previous, check=False)
    return IMAGE


class Container:
    """One `podman run -d` of the image with a fresh named volume on HOME, removed afterwards."""

    def __init__(self, image: str, *run_args: str, env: dict[str, str] | None = None):
        self.name = "clinvk-test-" + uuid.uuid4().hex[:10]
        self.volume = self.name + "-home"
        self.image = image
        self.run_args = list(run_args)
        self.env = env or {}
        podman("volume", "create", self.volume)
        self.home = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume).stdout.strip())
        # The first use of an empty volume copies the image's HOME into it (owner 10001), as it
        # happens for a user on `docker run`; the tests then put their config files there.
        podman("run", "--rm", *RUN_FLAGS, "-v", f"{self.volume}:{HOME}", image, "true")

    def put(self, relative: str, text: str) -> None:
        """A file in the volume, owned by the container's user."""
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        subprocess.run(["chown", "-R", f"{USER_ID}:{USER_ID}", str(self.home)], check=True)

    def start(self, url: str) -> "Container":
        env_args = [a for k, v in self.env.items() for a in ("-e", f"{k}={v}")]
        podman("run", "-d", "--name", self.name, *RUN_FLAGS, "--stop-timeout", str(STOP_TIMEOUT),
               "-v", f"{self.volume}:{HOME}", "--tmpfs", "/tmp", *env_args, *self.run_args, self.image)
        self.wait_healthy(url)
        return self

    def wait_healthy(self, url: str) -> None:
        def healthy() -> bool:
            assert self.state()["Status"] == "running", self.logs()
            try:
                return requests.get(url + "/health", timeout=2).json()["status"] == "ok"
            except (requests.RequestException, ValueError):
                return False

        wait_until(healthy, 60, f"/health of the container at {url}\n{self.logs()}")

    def state(self) -> dict:
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *argv, check=check)

    def processes(self) -> list[dict]:
        """Every process in the container: pid, ppid, state, uid and command line (there is no ps)."""
        script = ("import json, os\nout = []\nfor p in filter(str.isdigit, os.listdir('/proc')):\n"
                  "    try:\n        s = open(f'/proc/{p}/status').read()\n"
                  "        cmd = open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode().strip()\n"
                  "    except OSError:\n        continue\n"
                  "    f = dict(l.split(':\\t', 1) for l in s.splitlines() if ':\\t' in l)\n"
                  "    out.append({'pid': int(p), 'ppid': int(f['PPid']), 'state': f['State'][0],\n"
                  "                'uid': int(f['Uid'].split()[0]), 'cmd': cmd})\n"
                  "print(json.dumps(out))\n")
        return [p for p in json.loads(self.exec("python3", "-c", script).stdout) if "/proc/" not in p["cmd"]]

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)
        podman("volume", "rm", "-f", self.volume, check=False)


@pytest.fixture
def containers(image) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []

    def make(*run_args: str, env: dict[str, str] | None = None) -> Container:
        made.append(Container(image, *run_args, env=env))
        return made[-1]

    yield make
    for container in made:
        container.remove()


def host_network_container(containers, *run_args: str) -> tuple[Container, str]:
    """A container on the host's network (to reach the loopback stubs), clinvk listening on a free
    127.0.0.1 port (README: "--network host"), with a work directory for the runs in the volume."""
    port = free_port()
    container = containers("--network", "host", *run_args, env={"CLINVK_BIND": f"127.0.0.1:{port}"})
    container.put("work/README", "the runs' work directory\n")
    return container, f"http://127.0.0.1:{port}"


def configure(container: Container, backends: dict, request_timeout_secs: int = 120) -> None:
    """clinvk's config in the volume ($CLINVK_HOME/config.yaml), read when the container starts."""
    container.put(".clinvk/config.yaml", yaml.safe_dump(
        {"backends": backends, "server": {"request_timeout_secs": request_timeout_secs}}))


def genuine_backend(container: Container, name: str, stub_url: str, timeout_s: float = 20) -> dict:
    """The config of one genuine CLI in the image pointed at a stub: tests/realcli.py's offline
    settings, written into the volume with the container's HOME in their paths."""
    env = realcli.offline_env(name, stub_url, container.home, timeout_s=timeout_s)
    subprocess.run(["chown", "-R", f"{USER_ID}:{USER_ID}", str(container.home)], check=True)
    env = {k: v.replace(str(container.home), HOME) for k, v in env.items()}
    return {"env": env, "model": realcli.E2E_MODELS[name]}


def fake_backend(name: str) -> dict:
    """A fake CLI from tests/fakes (mounted at /opt/fakes), logging its runs into the volume."""
    return {"command": f"/opt/fakes/{name}", "env": {"FAKE_CLI_LOG": f"{HOME}/fake-cli.log"}}


FAKES_MOUNT = ("-v", f"{ROOT / 'tests' / 'fakes'}:/opt/fakes:ro")


@pytest.fixture
def echo_stubs() -> Iterator[dict]:
    started = {name: module.start_stub(mode="echo") for name, module in STUBS.items()}
    yield started
    for stub in started.values():
        stub.stop()


# -- running it as README says -------------------------------------------------------------------------

def test_health_from_the_host_as_non_root_with_a_writable_home_volume(containers):
    """README's command: published on 127.0.0.1, a named volume on HOME, a tmpfs on /tmp."""
    port = free_port()
    container = containers("-p", f"127.0.0.1:{port}:8080").start(f"http://127.0.0.1:{port}")
    health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    assert health["status"] == "ok"
    assert {b["name"]: b["available"] for b in health["backends"]} == \
        {"claude": True, "codex": True, "gemini": True}, "the CLIs are on the image's PATH"

    servers = [p for p in container.processes() if "gunicorn" in p["cmd"]]
    assert len(servers) >= 2, "gunicorn's master and worker"
    assert {p["uid"] for p in servers} == {USER_ID}
    init = [p for p in container.processes() if p["pid"] == 1][0]
    assert init["cmd"].startswith("/usr/bin/tini"), init

    container.exec("touch", f"{HOME}/written-by-the-user")
    written = container.home / "written-by-the-user"
    assert written.exists() and written.stat().st_uid == USER_ID, "HOME is the volume, writable by 10001"
    assert (container.home / ".clinvk").is_dir(), "the session store is on the volume"

    check = podman("healthcheck", "run", container.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


# -- the genuine CLIs ---------------------------------------------------------------------------------------

def test_genuine_clis_reach_the_host_stubs_and_sessions_survive_a_restart(containers, echo_stubs):
    container, url = host_network_container(containers)
    configure(container, {name: genuine_backend(container, name, stub.url) for name, stub in echo_stubs.items()})
    container.start(url)

    first = {}
    for backend in STUBS:
        answer = requests.post(url + "/api/v1/prompt", timeout=180, json={
            "backend": backend, "prompt": f"first question to {backend}", "workdir": f"{HOME}/work"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["exit_code"] == 0 and body["output"] == f"echo: first question to {backend}", body
        first[backend] = body

    podman("restart", "-t", str(STOP_TIMEOUT), container.name, timeout=STOP_TIMEOUT + 60)
    container.wait_healthy(url)

    listed = requests.get(url + "/api/v1/sessions", timeout=30).json()
    assert {b["session_id"] for b in first.values()} <= {s["id"] for s in listed["sessions"]}, listed
    for backend, body in first.items():
        again = requests.post(url + "/api/v1/prompt", timeout=180, json={
            "session_id": body["session_id"], "prompt": f"second question to {backend}"})
        assert again.status_code == 200, again.text
        assert again.json()["output"] == f"echo: second question to {backend}", again.json()
        assert again.json()["backend_session_id"] == body["backend_session_id"]
        # The CLI resumed its own conversation from the volume: the vendor API saw the first turn.
        last = [r for r in echo_stubs[backend].requests if r.get("user_text") == f"second question to {backend}"]
        assert last and last[-1]["n_turns"] >= 3, (backend, last)


# -- stopping ----------------------------------------------------------------------------------------------

def test_podman_stop_with_runs_in_flight_exits_0_in_time(containers, image):
    """Two runs hang: the genuine claude waiting on a vendor stub that never answers, and a fake
    codex with a child process. `podman stop` (SIGTERM to tini → gunicorn) lets them go on for the
    shutdown grace, then clinvk ends them; both requests get an answer and the container exits 0
    before the stop timeout (after it, the engine would SIGKILL: 137)."""
    hung = anthropic_stub.start_stub(mode="hang")
    try:
        container, url = host_network_container(containers, *FAKES_MOUNT)
        # timeout_s: the CLI's own API timeout must not end the run before the stop does
        configure(container, {"claude": genuine_backend(container, "claude", hung.url, timeout_s=300),
                              "codex": fake_backend("codex")}, request_timeout_secs=300)
        container.start(url)

        with ThreadPoolExecutor(2) as pool:
            claude = pool.submit(requests.post, url + "/api/v1/prompt", timeout=STOP_TIMEOUT + 60,
                                 json={"backend": "claude", "prompt": "a question that hangs",
                                       "workdir": f"{HOME}/work"})
            codex = pool.submit(requests.post, url + "/api/v1/prompt", timeout=STOP_TIMEOUT + 60,
                                json={"backend": "codex", "prompt": "FAKE_HANG FAKE_SPAWN_CHILD hangs too",
                                      "workdir": f"{HOME}/work"})
            wait_until(lambda: bool(hung.requests), 60, "the hanging stub got claude's request")
            wait_until(lambda: (container.home / "fake-cli.log").exists(), 60, "the fake codex started")
            host_pids = [int(line.split()[0]) for line in
                         podman("top", container.name, "hpid", "args").stdout.splitlines()[1:]]
            assert any("claude" in p["cmd"] for p in container.processes())

            started = time.monotonic()
            stop = podman("stop", "-t", str(STOP_TIMEOUT), container.name, timeout=STOP_TIMEOUT + 60)
            took = time.monotonic() - started
            answers = [claude.result(), codex.result()]

        state = container.state()
        assert state["Status"] == "exited" and state["ExitCode"] == 0, (state, took, stop.stderr, container.logs())
        assert all(a.status_code < 600 and a.json() for a in answers), "each request got an answer"
        assert not [p for p in host_pids if Path(f"/proc/{p}").exists()], "a process of the container is left"
    finally:
        hung.stop()


def test_tini_reaps_the_orphans_of_a_cli(containers):
    """A fake CLI leaves a child behind (FAKE_SPAWN_CHILD); clinvk ends it with the run's process
    group. Orphaned, it belongs to PID 1, tini, which must reap it: no zombie stays."""
    container, url = host_network_container(containers, *FAKES_MOUNT)
    configure(container, {"claude": fake_backend("claude")})
    container.start(url)
    answer = requests.post(url + "/api/v1/prompt", timeout=60, json={
        "backend": "claude", "prompt": "FAKE_SPAWN_CHILD leave a child", "workdir": f"{HOME}/work"})
    assert answer.status_code == 200 and answer.json()["exit_code"] == 0, answer.text
    run = json.loads((container.home / "fake-cli.log").read_text().splitlines()[-1])
    assert run["child_pid"], run

    def child_gone() -> bool:
        return all(p["pid"] not in (run["pid"], run["child_pid"]) for p in container.processes())

    wait_until(child_gone, 30, f"the CLI {run['pid']} and its child {run['child_pid']} reaped")
    zombies = [p for p in container.processes() if p["state"] == "Z"]
    assert not zombies, zombies


# -- bubblewrap -------------------------------------------------------------------------------------------

def test_bubblewrap_in_the_container_as_the_user(containers):
    """What README says about bwrap in the container (podman's default seccomp profile, no added
    capabilities): user 10001 can make bwrap's namespaces and bind mounts, but not mount a new /proc
    (the engine's masked /proc forbids it), so a sandbox needing `--proc` cannot run there."""
    port = free_port()
    container = containers("-p", f"127.0.0.1:{port}:8080").start(f"http://127.0.0.1:{port}")
    assert container.exec("id", "-u").stdout.strip() == str(USER_ID)
    assert container.exec("bwrap", "--ro-bind", "/", "/", "true", check=False).returncode == 0
    # Started by a process of the container, as clinvk would: straight under `podman exec`,
    # --die-with-parent fires at once (exec's parent thread ends), which says nothing of a server.
    works = container.exec("python3", "-c", "import subprocess, sys; sys.exit(subprocess.run(["
                           "'bwrap', '--ro-bind', '/', '/', '--dev', '/dev', '--unshare-all', "
                           "'--die-with-parent', 'true']).returncode)", check=False)
    assert works.returncode == 0, works.stderr
    no_proc = container.exec("bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "true",
                             check=False)
    assert no_proc.returncode != 0 and "Can't mount proc" in no_proc.stderr, no_proc
