#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
#   - Python test dependencies (pinned) and clinvk itself (editable)
#   - the genuine claude / codex / gemini CLIs from npm (pinned), for the real-CLI end-to-end tests
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k openai`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing Python dependencies"
python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
python3 -m pip install --quiet --disable-pip-version-check --no-deps -e .

echo "== installing the pinned backend CLIs (npm)"
bash scripts/install-clis.sh

echo "== running the tests"
python3 -m pytest -q -p no:cacheprovider "$@"
