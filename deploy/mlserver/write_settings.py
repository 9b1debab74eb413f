"""Write an MLServer configuration directory that serves a Triton model directory.

MLServer reads ``settings.json`` (the server) and ``<model>/model-settings.json`` (each model)
from the directory given to ``mlserver start``. This writes both, plus a copy of our runtime
``onnx_runtime.py`` beside the model settings (MLServer imports custom runtimes from there), so
the directory is self-contained::

    python deploy/mlserver/write_settings.py /tmp/mlserver --grpc-port 8001 --http-port 8000
    (cd /tmp/mlserver && ../path/to/.tools/mlserver-venv/bin/mlserver start .)

The server is one process (``parallel_workers: 0``), listens on loopback by default, and accepts
gRPC messages up to 64 MiB (MLServer's default is 4 MiB; Triton's is 2 GiB). Standard library
only: it runs from the project's venv and from MLServer's.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

__all__ = ["DEFAULT_MODEL_DIR", "GRPC_MAX_MESSAGE_LENGTH", "write_settings"]

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_MODEL_DIR = ROOT / "deploy/triton/model_repository/digits_cnn"
GRPC_MAX_MESSAGE_LENGTH = 64 * 1024 * 1024
_RUNTIME = Path(__file__).resolve().parent / "onnx_runtime.py"


def write_settings(
    out_dir: str | Path,
    *,
    grpc_port: int,
    http_port: int,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    model_name: str | None = None,
    host: str = "127.0.0.1",
    metrics_port: int | None = None,
    grpc_max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
) -> Path:
    """Write ``settings.json`` and ``<model_name>/model-settings.json`` under ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Directory to write into (created if missing); pass it to ``mlserver start``.
    grpc_port, http_port : int
        Ports MLServer listens on. MLServer cannot bind port 0 and report the port back: pick
        free ports first.
    model_dir : str or Path
        A Triton model directory: ``config.pbtxt`` and ``<version>/model.onnx``.
    model_name : str, optional
        Name to serve the model under; the directory's name by default, as Triton does.
    host : str
        Address to listen on.
    metrics_port : int, optional
        Port for MLServer's Prometheus endpoint; ``None`` turns that server off.
    grpc_max_message_length : int
        Largest gRPC message accepted and sent, in bytes.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir).resolve()
    model_dir = Path(model_dir).resolve()
    if not (model_dir / "config.pbtxt").is_file():
        raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no config.pbtxt")
    name = model_name or model_dir.name
    versions = [p.name for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir()]
    if not versions:
        raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no <version>/ directory")
    server = {
        "debug": False,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "grpc_max_message_length": grpc_max_message_length,
        "parallel_workers": 0,
        "load_models_at_startup": True,
        "model_repository_root": str(out),
        "metrics_endpoint": "/metrics" if metrics_port is not None else None,
        "metrics_port": metrics_port if metrics_port is not None else 0,
        # Both default to the working directory; keep MLServer's scratch files in out_dir.
        "metrics_dir": str(out / ".metrics"),
        "environments_dir": str(out / ".envs"),
    }
    model = {
        "name": name,
        "implementation": "onnx_runtime.TritonOnnxModel",
        # Serve the latest version under its number, so requests for version "1" work as on
        # Triton (MLServer registers an unversioned model otherwise).
        "parameters": {"uri": str(model_dir), "version": max(versions, key=int)},
    }
    (out / name).mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(server, indent=2) + "\n")
    (out / name / "model-settings.json").write_text(json.dumps(model, indent=2) + "\n")
    shutil.copyfile(_RUNTIME, out / name / _RUNTIME.name)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    out = write_settings(
        args.out_dir,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        model_dir=args.model_dir,
        host=args.host,
    )
    print(f"cd {out} && {ROOT / '.tools/mlserver-venv/bin/mlserver'} start .")


if __name__ == "__main__":
    main()
