#!/usr/bin/env bash
# The single installer of bnnforge's dependencies: `make setup`, the Dockerfile and CI all run it.
#
# Creates $VENV (default .venv) with the pinned stack from requirements/, and, when run as root,
# installs the Debian packages the project uses. Idempotent: when nothing changed since the last
# successful run it exits at once without output.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
TORCH_SPEC="torch==2.13.0"
FINN_PLUS="finn-plus==1.6.1"
# the board-side driver of finn-plus: its packing runs in our driver on the board and in simulation
FINN_DRIVER="finn-plus-driver==1.6.1"
# Debian packages: the Fashion-MNIST data set, Yosys, a C++ toolchain for Verilator models, and
# ccache, through which Verilator compiles its run-time library once instead of once per build.
APT_PACKAGES="dataset-fashion-mnist yosys g++ make ccache"

STAMP="$VENV/.bnnforge-setup"
want=$(cat requirements/lock.txt scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)

missing_apt() {
    local p
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo -n "$p "
    done
}

missing=$(missing_apt)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -z "$missing" ]; then
    exit 0
fi

if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ]; then
        echo "setup: installing Debian packages: $missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "setup: Debian packages missing; run as root:"
        echo "    sudo apt-get install -y $missing"
    fi
fi

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    start=$(date +%s)
    echo "setup: creating $VENV with the pinned stack (a few minutes on a fresh machine)"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # pip warns about unusable local index paths on some machines; keep the log readable
    pip() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
    pip "$TORCH_SPEC"
    pip -r requirements/lock.txt
    # finn-plus pins brevitas==0.13.0, which does not coexist with torch 2.13: install it alone.
    pip --no-deps "$FINN_PLUS"
    # finn-plus-driver pins numpy<2 and grpcio for the board image; its packing needs neither.
    pip --no-deps "$FINN_DRIVER"
    pip --no-deps --no-build-isolation -e .
    echo "$want" > "$STAMP"
    echo "setup: done in $(( $(date +%s) - start )) s"
fi
