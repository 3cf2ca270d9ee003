"""clinvk: run the AI coding CLIs (claude, codex, gemini) behind one HTTP API and one command line."""

__version__ = "0.1.0"
