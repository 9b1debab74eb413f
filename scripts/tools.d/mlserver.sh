# MLServer: a KServe V2 (Open Inference Protocol) gRPC server that stands in for NVIDIA Triton in
# tests/triton (Triton itself cannot run here: DESIGN.md §6). It lives in its own virtual
# environment because its dependencies clash with the project's; onnxruntime runs our runtime
# deploy/mlserver/onnx_runtime.py inside it.

tool_mlserver() {
    local venv="$TOOLS_DIR/mlserver-venv"
    local pins="mlserver==1.7.1 onnxruntime==1.31.1 numpy==2.4.6"
    local stamp="$venv/.installed"
    if [[ -x "$venv/bin/mlserver" && -f "$stamp" && "$(<"$stamp")" == "$pins" ]]; then
        return 0
    fi
    echo "install-tools: $pins into ${venv#"$ROOT"/}"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    # shellcheck disable=SC2086 # $pins is a list of requirement specifiers
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $pins
    "$venv/bin/python" -c "import mlserver, onnxruntime" # fail here, not in a test
    printf '%s\n' "$pins" >"$stamp"
}
