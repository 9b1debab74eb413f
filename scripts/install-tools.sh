#!/usr/bin/env bash
# Installs the external programs the test suite drives (buf, promtool, redis-server, MLServer, ...).
# Idempotent and safe to re-run. Python packages of the project itself are not installed here: the
# Makefile builds .venv from pyproject.toml. Each scripts/tools.d/*.sh snippet owns one tool: it may
# append Debian package names to APT_PACKAGES (installed together, one apt-get update) and/or define
# a function named after its file (e.g. tool_buf for buf.sh) that runs after the apt step.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TOOLS_DIR="$ROOT/.tools"
mkdir -p "$TOOLS_DIR"
export ROOT TOOLS_DIR

APT_PACKAGES=()
POST_STEPS=()
for snippet in scripts/tools.d/*.sh; do
    [[ -e "$snippet" ]] || continue
    # shellcheck source=/dev/null
    source "$snippet"
    fn="tool_$(basename "$snippet" .sh | tr '-' '_')"
    if declare -F "$fn" >/dev/null; then POST_STEPS+=("$fn"); fi
done

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "install-tools: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for step in "${POST_STEPS[@]}"; do "$step"; done
