#!/usr/bin/env bash
# Generates the Python stubs of the wire contract: proto/evalstream/v1/*.proto ->
# client/evalstream/v1/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py. The generated files are committed, and
# tests/proto checks them for drift by running this script into a temporary directory.
#
# Usage: scripts/gen_proto.sh [OUT_DIR]      (OUT_DIR defaults to client/)
# The interpreter is .venv/bin/python unless PYTHON is set; it must have grpcio-tools at exactly
# GRPC_TOOLS_VERSION, because another version writes different bytes.
set -euo pipefail
GRPC_TOOLS_VERSION="1.81.1"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/client}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

have="$("$PYTHON" -c 'from importlib.metadata import version; print(version("grpcio-tools"))' 2>/dev/null || true)"
if [[ "$have" != "$GRPC_TOOLS_VERSION" ]]; then
    echo "gen_proto: need grpcio-tools==$GRPC_TOOLS_VERSION in $PYTHON, found '${have:-none}'" >&2
    echo "gen_proto: run 'make venv' (pyproject.toml + constraints.txt pin it)" >&2
    exit 1
fi

# Relative paths under proto/, sorted, so every run sees the same inputs in the same order.
cd "$ROOT/proto"
mapfile -t protos < <(find evalstream -name '*.proto' | LC_ALL=C sort)

# Remove earlier output so a deleted .proto leaves no stale module behind; __init__.py stays.
rm -f "$OUT"/evalstream/v1/*_pb2.py "$OUT"/evalstream/v1/*_pb2.pyi "$OUT"/evalstream/v1/*_pb2_grpc.py \
    "$OUT"/evalstream/v1/*.schema.json

# Run from proto/ with -I. so the generated files record paths like "evalstream/v1/stream.proto",
# exactly as buf and every other language see them. `python -m grpc_tools.protoc` adds the
# well-known types (google/protobuf/*.proto) to the include path itself.
"$PYTHON" -m grpc_tools.protoc -I. \
    --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
    "${protos[@]}"

# The gRPC plugin writes a *_pb2_grpc.py for every file, even one without a service, holding only
# a version check; keep just the modules of files that define a service.
for proto in "${protos[@]}"; do
    if ! grep -q '^service ' "$proto"; then rm -f "$OUT/${proto%.proto}_pb2_grpc.py"; fi
done
# The JSON Schema of the canonical report travels with the stubs (package data of the client),
# so a client can validate report_json without the repository.
cp evalstream/v1/*.schema.json "$OUT/evalstream/v1/"
echo "gen_proto: ${#protos[@]} files -> $OUT/evalstream/v1"
