#!/usr/bin/env bash
# Records the wire contract as released: proto/ -> proto/baseline/evalstream.v1.binpb (a buf image,
# without source info). tests/proto runs `buf breaking` against it, so every later change to
# proto/ must stay additive (buf.yaml's FILE rules) until the next release records a new baseline.
#
# Usage: scripts/tag_contract.sh        (run at a release, commit the image with the release)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUF="${BUF:-$ROOT/.tools/bin/buf}"
cd "$ROOT"
"$BUF" build --exclude-source-info -o proto/baseline/evalstream.v1.binpb
echo "tag_contract: proto/ -> proto/baseline/evalstream.v1.binpb"
