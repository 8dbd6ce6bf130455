#!/usr/bin/env bash
# Prepares what `make bench` needs besides herder itself: Debian's redis-server (for the Celery
# and Huey brokers) and a separate virtualenv with the peers, so that their dependencies never
# touch herder's .venv. Idempotent: a stamp file inside the venv skips the install next time.
# A peer that cannot be installed is left out; the bench then reports it as "n/a".
set -u
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv-peers
STAMP=$VENV/.peers.stamp
PEERS=(celery redis huey "dask[distributed]" ray)

if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
    echo "bench: installing Debian's redis-server"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server \
            || echo "bench: could not install redis-server; Celery and Huey will be n/a"
    else
        echo "bench: redis-server missing and not root; Celery and Huey will be n/a"
    fi
    # Debian starts the packaged service; the bench runs its own on a free port instead.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server 2>/dev/null || true; fi
fi

if [ ! -f "$STAMP" ]; then
    [ -x $VENV/bin/python ] || "$PYTHON" -m venv $VENV
    $VENV/bin/python -m pip install --quiet --upgrade pip
    # All at once first; if that fails, one by one so that one broken peer does not hide the rest.
    if ! $VENV/bin/python -m pip install --quiet "${PEERS[@]}"; then
        for p in "${PEERS[@]}"; do
            $VENV/bin/python -m pip install --quiet "$p" || echo "bench: could not install $p"
        done
    fi
    touch "$STAMP"
fi
exit 0
