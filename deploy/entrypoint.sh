#!/bin/sh
# Entry point of the clinvk container image (runs under tini, see deploy/Containerfile); it works
# the same outside a container.
#
#   entrypoint.sh [serve] [GUNICORN OPTION...]   exec gunicorn -c deploy/gunicorn.conf.py wsgi:app
#   entrypoint.sh healthcheck                    exit 0 if /health says ok or degraded, else 1
#   entrypoint.sh COMMAND [ARG...]               exec COMMAND (clinvk version, sh, ...)
#
# Environment: everything deploy/gunicorn.conf.py reads (CLINVK_BIND, CLINVK_WORKERS, CLINVK_THREADS,
# PROMETHEUS_MULTIPROC_DIR, CLINVK_*), plus CLINVK_APP_DIR (where wsgi.py
# and deploy/ are; default: this script's parent directory) and PYTHON (default python3).
set -eu

APP_DIR="${CLINVK_APP_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
PYTHON="${PYTHON:-python3}"

case "${1:-serve}" in
    serve | -*)
        if [ "${1:-}" = serve ]; then shift; fi
        if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
            mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        fi
        # exec: gunicorn's master becomes this process, so SIGTERM from tini (docker stop) or from a
        # service manager reaches it directly and it stops its workers gracefully.
        exec "$PYTHON" -m gunicorn --chdir "$APP_DIR" -c "$APP_DIR/deploy/gunicorn.conf.py" "$@" wsgi:app
        ;;
    healthcheck)
        # The port gunicorn listens on (first of CLINVK_BIND); /health is always HTTP 200, the
        # verdict is its "status" ("unhealthy" when the session store is unusable).
        exec "$PYTHON" - <<'EOF'
import json, os, sys, urllib.request
bind = (os.environ.get("CLINVK_BIND") or "127.0.0.1:8080").split(",")[0].strip()
port = bind.rsplit(":", 1)[-1]
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        status = json.load(response).get("status")
except Exception as exc:
    print(f"health check failed: {exc}", file=sys.stderr)
    sys.exit(1)
print(f"health: {status}")
sys.exit(0 if status in ("ok", "degraded") else 1)
EOF
        ;;
    *)
        exec "$@"
        ;;
esac
