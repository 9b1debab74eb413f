#!/usr/bin/env bash
# buf: lint, build and breaking-change checks for proto/ (configured by buf.yaml at the root).
# Sourced by scripts/install-tools.sh, which sets TOOLS_DIR and calls tool_buf.
#
# Installed from the npm registry as @bufbuild/buf at an exact version. The package carries the
# native binary for each platform as an optional dependency, so npm downloads nothing else. It gets
# its own prefix (.tools/buf) so that no other tool's npm install can prune it.
# Result: .tools/bin/buf, a link to the native binary of this platform (or, failing that, to the
# package's Node.js launcher, which finds the same binary at each call).
BUF_VERSION="1.75.0"

# npm ships with Debian's nodejs; ask apt for it only where it is missing.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)

tool_buf() {
    local prefix="$TOOLS_DIR/buf"
    local link="$TOOLS_DIR/bin/buf"
    if [[ -x "$link" ]] && [[ "$("$link" --version 2>/dev/null)" == "$BUF_VERSION" ]]; then
        return 0
    fi
    echo "install-tools: npm install @bufbuild/buf@$BUF_VERSION into $prefix"
    rm -rf "$prefix"
    mkdir -p "$prefix" "$TOOLS_DIR/bin"
    npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "@bufbuild/buf@$BUF_VERSION"
    local native=("$prefix"/node_modules/@bufbuild/buf-*/bin/buf)
    if [[ ${#native[@]} -eq 1 && -x "${native[0]}" ]]; then
        ln -sfn "../buf/${native[0]#"$prefix"/}" "$link"
    else
        ln -sfn ../buf/node_modules/.bin/buf "$link"
    fi
    local got
    got="$("$link" --version)"
    if [[ "$got" != "$BUF_VERSION" ]]; then
        echo "install-tools: buf --version says '$got', expected '$BUF_VERSION'" >&2
        return 1
    fi
}
