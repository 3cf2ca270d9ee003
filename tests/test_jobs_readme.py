"""README.rst's Jobs snippet, run as it is (but for the port) against a live server and the fake CLIs."""

from __future__ import annotations

from tests.liveserver import live, readme_snippet  # noqa: F401 (fixture)


def test_readme_jobs_snippet_works(live, fake_clis, capsys):
    code = readme_snippet("Jobs", "/api/v1/jobs")
    assert '"http://127.0.0.1:8080"' in code
    exec(compile(code.replace("http://127.0.0.1:8080", live.url), "README.rst", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "queued"
    assert lines[-1] == "completed echo: Fix the tests"
    assert [line.split(" ", 1)[1] for line in lines[1:-1]] == ["echo: Fix the tests"]
    assert int(lines[1].split(" ", 1)[0]) > 1  # its position: after codex's init event
