"""Stdlib-only loopback stubs of the vendor APIs behind the real claude/codex/gemini CLIs.

Each module has ``start_stub(mode="ok", reply="Hello from stub", port=0) -> StubHandle`` and runs
as a script (``python3 tests/stubs/<module>.py --port 0``).  See ``common`` for the shared modes.
"""
