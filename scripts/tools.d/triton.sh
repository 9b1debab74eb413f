# NVIDIA Triton Inference Server, the real one, for tests/triton (CPU only, no container engine).
# Sourced by scripts/install-tools.sh, which sets TOOLS_DIR and calls tool_triton.
#
# PyPI's nvidia-pytriton wheel (0.7.0, about 55 MB) carries the tritonserver 2.51 binary, its
# bundled libraries (nvidia_pytriton.libs) and the Python backend with a stub per Python version.
# Only those files are used, so the wheel goes in --no-deps (its own requirements, tritonclient
# 2.5x and numpy < 2, are for PyTriton's Python API, which we do not run). The venv is also the
# Python that the backend stub runs model.py with: onnxruntime for the ONNX file, and numpy 1.26
# (the stub's pybind11 was built against numpy 1.x: with numpy 2 every output tensor came back
# empty, measured). Result:
#   .tools/triton-venv/bin/python                    the stub's interpreter (PATH must start here)
#   .tools/triton/bin/tritonserver                   a link to the wheel's binary
#   .tools/triton/backends/python/                   libtriton_python.so, the utils, the 3.11 stub
#   .tools/triton/lib                                a link to the wheel's bundled libraries
# tests/triton/realtriton.py starts it (LD_LIBRARY_PATH, PATH and flags: DESIGN.md §6).

tool_triton() {
    local venv="$TOOLS_DIR/triton-venv"
    local home="$TOOLS_DIR/triton"
    local pins="nvidia-pytriton==0.7.0 onnxruntime==1.31.1 numpy==1.26.4"
    local stamp="$venv/.installed"
    if [[ -x "$home/bin/tritonserver" && -f "$stamp" && "$(<"$stamp")" == "$pins" ]]; then
        return 0
    fi
    echo "install-tools: $pins into ${venv#"$ROOT"/}"
    rm -rf "$venv" "$home"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps nvidia-pytriton==0.7.0
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-conflicts \
        onnxruntime==1.31.1 numpy==1.26.4
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    local wheel="$site/pytriton/tritonserver"
    local pyver
    pyver="$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    mkdir -p "$home/bin" "$home/backends/python"
    ln -sfn "$wheel/bin/tritonserver" "$home/bin/tritonserver"
    ln -sfn "$site/nvidia_pytriton.libs" "$home/lib"
    cp "$wheel/backends/python/libtriton_python.so" "$wheel/backends/python/triton_python_backend_utils.py" \
        "$wheel/python_backend_stubs/$pyver/triton_python_backend_stub" "$home/backends/python/"
    "$venv/bin/python" -c "import numpy, onnxruntime" # fail here, not in a test
    # --help loads every library the binary links (and exits 1): fail here when one is missing
    local usage
    usage="$(LD_LIBRARY_PATH="$home/lib" "$home/bin/tritonserver" --help 2>&1 || true)"
    [[ "$usage" == "Usage: tritonserver"* ]] || {
        echo "install-tools: $home/bin/tritonserver does not start" >&2
        return 1
    }
    printf '%s\n' "$pins" >"$stamp"
}
