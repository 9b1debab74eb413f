#!/usr/bin/env bash
# Build .tools/bench-venv: the project plus the benchmark peers (TorchMetrics on a CPU PyTorch,
# River, scikit-learn). Kept out of .venv so the test environment never carries torch.
#
#   bash scripts/bench-venv.sh            # idempotent: re-running only installs what is missing
#   .tools/bench-venv/bin/python bench/engine_ingest.py
#
# PyTorch 2.13.0 CPU lies on this machine's disk for pip (DESIGN §7): with torch==2.13.0 and no
# other torch version requested, pip takes that local wheel. The script refuses a CUDA build.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${BENCH_VENV:-.tools/bench-venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

start=$(date +%s)
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# torch first, on its own, so that no later resolution can swap it for another build.
"$PY" -m pip install -q "torch==${TORCH_VERSION}"
"$PY" -m pip install -q -c constraints.txt -e ./client -e '.[bench]' "torch==${TORCH_VERSION}"

"$PY" - <<'EOF'
import numpy, river, sklearn, torch, torchmetrics

if torch.version.cuda is not None:
    raise SystemExit(f"bench-venv: got a CUDA build of torch ({torch.__version__}); want CPU")
print(
    f"bench-venv ready: numpy {numpy.__version__}, torch {torch.__version__}, "
    f"torchmetrics {torchmetrics.__version__}, river {river.__version__}, "
    f"scikit-learn {sklearn.__version__}"
)
EOF
echo "bench-venv: built in $(( $(date +%s) - start )) s at $VENV"
