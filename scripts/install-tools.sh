#!/usr/bin/env bash
# Installs the external programs the test suite drives. Idempotent: each block checks first.
# Python packages are not installed here (the Makefile builds .venv from pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (blocks add Debian packages to need_apt as the project grows)

if ((${#need_apt[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
