#!/usr/bin/env bash
# Idempotent set-up: system packages (GStreamer, ffmpeg) when root, then .venv with this package.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
  gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 gir1.2-gst-plugins-base-1.0 python3-gi ffmpeg
  libgirepository1.0-dev libcairo2-dev pkg-config
  chromium fonts-liberation)  # the viewer's browser tests (Playwright drives the system's chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages (run as root or install them): ${missing[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.stbn-setup
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    # CPU machine: the pinned CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
    .venv/bin/python -m pip install -q "torch==2.13.0"
  fi
  extras="dev"
  if pkg-config --exists gobject-introspection-1.0 2>/dev/null; then extras="dev,gst"; fi
  .venv/bin/python -m pip install -q -e ".[${extras}]"
  echo "$want" > "$stamp"
fi
