#!/usr/bin/env bash
# The dependencies of examples/node (the Node.js client the test suite runs against a live server):
# @grpc/grpc-js, @grpc/proto-loader and ajv at the exact versions of examples/node/package.json,
# installed with `npm ci` from its package-lock.json into .tools/node-example/node_modules.
# Sourced by scripts/install-tools.sh, which sets ROOT and TOOLS_DIR and calls tool_node_example.

command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)

tool_node_example() {
    local src="$ROOT/examples/node"
    local prefix="$TOOLS_DIR/node-example"
    if [[ -d "$prefix/node_modules" ]] && cmp -s "$src/package-lock.json" "$prefix/package-lock.json"; then
        return 0
    fi
    echo "install-tools: npm ci examples/node -> $prefix"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    cp "$src/package.json" "$src/package-lock.json" "$prefix/"
    (cd "$prefix" && npm ci --no-audit --no-fund --loglevel=error)
}
