"""The wire contract: buf lint and build, drift of the committed stubs, a bytes round trip, naming.

These tests read ``proto/``, ``buf.yaml``, ``scripts/gen_proto.sh`` and the committed stubs in
``client/evalstream/v1``; they start no server.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from google.protobuf import descriptor, descriptor_pb2
from google.protobuf.timestamp_pb2 import Timestamp

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
GENERATED_DIR = ROOT / "client" / "evalstream" / "v1"
GEN_SCRIPT = ROOT / "scripts" / "gen_proto.sh"
BUF = ROOT / ".tools" / "bin" / "buf"
_GENERATED_NAME = re.compile(r".+_pb2(_grpc)?\.pyi?|.+\.schema\.json")

try:
    import evalstream.v1  # noqa: F401
except ImportError:  # the project is not installed into this interpreter: use the source tree
    sys.path.insert(0, str(ROOT / "client"))

from evalstream.v1 import evalstream_service_pb2 as service_pb2  # noqa: E402
from evalstream.v1 import evalstream_service_pb2_grpc as service_pb2_grpc  # noqa: E402
from evalstream.v1 import ingest_pb2, stream_pb2, tensor_pb2  # noqa: E402

# numpy dtype of each Tensor.dtype: every one little-endian, as the contract says.
_NUMPY_DTYPE = {
    tensor_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    tensor_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    tensor_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
    tensor_pb2.DATA_TYPE_UINT8: np.dtype("u1"),
    tensor_pb2.DATA_TYPE_BOOL: np.dtype("?"),
}

EXPECTED_RPCS = {
    # name: (client streams, server streams)
    "CreateStream": (False, False),
    "GetStream": (False, False),
    "ListStreams": (False, False),
    "DeleteStream": (False, False),
    "ResetStream": (False, False),
    "Ingest": (True, True),
    "LogPredictions": (False, False),
    "LogLabels": (False, False),
    "GetReport": (False, False),
    "GetCurve": (False, False),
    "WatchReport": (False, True),
    "GetServerInfo": (False, False),
    "Compare": (False, False),
}


# --- buf -------------------------------------------------------------------------------------


BufRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def buf(tmp_path_factory: pytest.TempPathFactory) -> BufRunner:
    """Runs the pinned buf at the repository root, with a private cache directory."""
    if not os.access(BUF, os.X_OK):
        pytest.fail(
            f"buf is not installed at {BUF.relative_to(ROOT)}: run `bash scripts/install-tools.sh` "
            "(`make test` runs it first)",
            pytrace=False,
        )
    env = {**os.environ, "BUF_CACHE_DIR": str(tmp_path_factory.mktemp("buf-cache"))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(BUF), *args], env=env)

    return run


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_buf_lint_is_clean(buf: BufRunner) -> None:
    result = buf("lint")
    assert result.returncode == 0, f"buf lint found problems:\n{result.stdout}{result.stderr}"


def test_buf_format_is_clean(buf: BufRunner) -> None:
    result = buf("format", "--diff", "--exit-code")
    assert result.returncode == 0, (
        "proto files are not in buf's format; fix with `.tools/bin/buf format -w`:\n"
        f"{result.stdout}{result.stderr}"
    )


BASELINE = PROTO_ROOT / "baseline" / "evalstream.v1.binpb"  # scripts/tag_contract.sh


def test_buf_breaking_against_the_released_contract(buf: BufRunner) -> None:
    result = buf("breaking", "--against", str(BASELINE))
    assert result.returncode == 0, (
        "proto/ breaks the released contract (proto/baseline, buf.yaml's FILE rules); within "
        f"evalstream.v1 changes must be additive:\n{result.stdout}{result.stderr}"
    )


def test_buf_breaking_catches_a_removed_field(buf: BufRunner, tmp_path: Path) -> None:
    """The check above can fail: the released contract minus one field is refused."""
    copy = tmp_path / "proto"
    shutil.copytree(PROTO_ROOT / "evalstream", copy / "evalstream")
    ingest = copy / "evalstream" / "v1" / "ingest.proto"
    text = ingest.read_text()
    assert "  uint64 expected_sequence = 8;\n" in text
    ingest.write_text(text.replace("  uint64 expected_sequence = 8;\n", ""))
    result = buf("breaking", str(copy), "--against", str(BASELINE))
    assert result.returncode != 0
    assert "expected_sequence" in result.stdout + result.stderr


def test_buf_build_matches_the_generated_descriptors(buf: BufRunner, tmp_path: Path) -> None:
    image = tmp_path / "image.binpb"
    result = buf("build", "--exclude-imports", "--exclude-source-info", "-o", str(image))
    assert result.returncode == 0, f"buf build failed:\n{result.stderr}"
    built = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())
    assert sorted(f.name for f in built.file) == PROTO_FILES
    # buf's compiler and protoc (inside grpcio-tools) must agree on every declaration.
    for file_proto in built.file:
        module = _generated_module(file_proto.name)
        assert _declarations(file_proto) == _declarations(_file_proto(module.DESCRIPTOR)), (
            file_proto.name
        )


def _declarations(file_proto: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    def message(m: descriptor_pb2.DescriptorProto) -> object:
        return (
            [(f.name, f.number, f.type, f.label, f.type_name, _oneof(f)) for f in m.field],
            [message(n) for n in m.nested_type],
            [(e.name, [(v.name, v.number) for v in e.value]) for e in m.enum_type],
        )

    return {
        "package": file_proto.package,
        "dependency": sorted(file_proto.dependency),
        "messages": {m.name: message(m) for m in file_proto.message_type},
        "enums": {e.name: [(v.name, v.number) for v in e.value] for e in file_proto.enum_type},
        "services": {
            s.name: [
                (r.name, r.input_type, r.output_type, r.client_streaming, r.server_streaming)
                for r in s.method
            ]
            for s in file_proto.service
        },
    }


def _oneof(field: descriptor_pb2.FieldDescriptorProto) -> int | None:
    return field.oneof_index if field.HasField("oneof_index") else None


def _file_proto(file_descriptor: descriptor.FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    file_proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(file_proto)
    return file_proto


# --- generated stubs -------------------------------------------------------------------------


def _generated_module(proto_name: str) -> ModuleType:
    return importlib.import_module(proto_name.removesuffix(".proto").replace("/", ".") + "_pb2")


def _generated_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and _GENERATED_NAME.fullmatch(p.name)
    }


def test_committed_stubs_are_what_gen_proto_writes(tmp_path: Path) -> None:
    result = _run(
        ["bash", str(GEN_SCRIPT), str(tmp_path)], env={**os.environ, "PYTHON": sys.executable}
    )
    assert result.returncode == 0, f"scripts/gen_proto.sh failed:\n{result.stderr}"
    fresh = _generated_files(tmp_path / "evalstream" / "v1")
    committed = _generated_files(GENERATED_DIR)
    assert fresh, "scripts/gen_proto.sh wrote no files"
    assert sorted(committed) == sorted(fresh), "generated file names differ"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, (
        f"committed stubs differ from proto/: {stale}; run `bash scripts/gen_proto.sh` and commit "
        "the result (and never reformat generated files)"
    )


def test_stubs_come_from_the_source_tree() -> None:
    assert Path(service_pb2.__file__).resolve().parent == GENERATED_DIR.resolve(), (
        f"evalstream.v1 was imported from {service_pb2.__file__}, not from client/: reinstall "
        "with `pip install -e .`"
    )


# --- a batch on the wire ---------------------------------------------------------------------


def _tensor(array: np.ndarray) -> tensor_pb2.Tensor:
    dtype = next(code for code, dt in _NUMPY_DTYPE.items() if dt == array.dtype.newbyteorder("<"))
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return tensor_pb2.Tensor(dtype=dtype, shape=array.shape, data=data)


def _array(tensor: tensor_pb2.Tensor) -> np.ndarray:
    return np.frombuffer(tensor.data, dtype=_NUMPY_DTYPE[tensor.dtype]).reshape(tuple(tensor.shape))


def test_ingest_request_round_trip() -> None:
    rng = np.random.default_rng(20240601)
    logits = rng.normal(scale=4.0, size=(4096, 10)).astype(np.float32)
    scores = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    scores[0] = 0.0  # edge values must cross bit-exactly: zeros, one, the smallest subnormal
    scores[1, 0] = 1.0
    scores[2] = np.nextafter(np.float32(0), np.float32(1))
    labels = rng.integers(0, 10, size=4096, dtype=np.int32)
    weights = rng.uniform(0.5, 2.0, size=4096)
    request = service_pb2.IngestRequest(
        stream="digits",
        producer_id="producer-0",
        sequence=7,
        scores=_tensor(scores),
        labels=_tensor(labels),
        sample_weight=_tensor(weights),
        event_time=Timestamp(seconds=1_700_000_000, nanos=123_456_789),
    )

    wire = request.SerializeToString()
    assert len(wire) < 1 << 20, "a 4096 x 10 batch must stay under the 1 MiB message guideline"
    parsed = service_pb2.IngestRequest.FromString(wire)

    assert (parsed.stream, parsed.producer_id, parsed.sequence) == ("digits", "producer-0", 7)
    assert parsed.event_time == Timestamp(seconds=1_700_000_000, nanos=123_456_789)
    got_scores = _array(parsed.scores)
    assert got_scores.dtype == np.float32 and got_scores.shape == (4096, 10)
    np.testing.assert_array_equal(got_scores.view(np.uint32), scores.view(np.uint32))  # bitwise
    np.testing.assert_array_equal(_array(parsed.labels), labels)
    np.testing.assert_array_equal(_array(parsed.sample_weight), weights)


def test_unset_optional_tensor_and_time_are_absent() -> None:
    labels = np.array([[1, 0, 1], [0, 0, 0]], dtype=np.uint8)
    request = service_pb2.IngestRequest(
        stream="tags",
        scores=_tensor(np.full((2, 3), 0.25, dtype=np.float16)),
        labels=_tensor(labels),
    )
    parsed = service_pb2.IngestRequest.FromString(request.SerializeToString())
    assert not parsed.HasField("sample_weight")
    assert not parsed.HasField("event_time")
    assert parsed.sequence == 0  # unsequenced
    np.testing.assert_array_equal(_array(parsed.labels), labels)
    np.testing.assert_array_equal(_array(parsed.scores), np.full((2, 3), 0.25, dtype=np.float16))


def test_ingest_response_carries_coalesced_results() -> None:
    response = service_pb2.IngestResponse(
        results=[
            ingest_pb2.BatchResult(
                stream="digits",
                producer_id="p",
                sequence=1,
                status=ingest_pb2.BATCH_STATUS_ACCEPTED,
                samples=4096,
                expected_sequence=2,
            ),
            ingest_pb2.BatchResult(
                stream="digits",
                producer_id="p",
                sequence=3,
                status=ingest_pb2.BATCH_STATUS_REJECTED,
                samples=4096,
                error_code=11,  # google.rpc.Code.OUT_OF_RANGE: a gap
                error_message="sequence: expected 2, got 3",
                expected_sequence=2,
            ),
        ],
        accepted_batches=1,
        rejected_batches=1,
        accepted_samples=4096,
        rejected_samples=4096,
    )
    parsed = service_pb2.IngestResponse.FromString(response.SerializeToString())
    assert parsed == response
    gap = parsed.results[1]
    assert not gap.expected_sequence > gap.sequence  # not consumed: resend from 2


def test_stream_config_resolution_is_a_oneof() -> None:
    config = stream_pb2.StreamConfig(
        name="digits",
        task=stream_pb2.TASK_MULTICLASS,
        classes=[str(i) for i in range(10)],
        score_kind=stream_pb2.SCORE_KIND_LOGITS,
        windows=["5m", "1h"],
        resolution=stream_pb2.Resolution(binned=stream_pb2.Resolution.Binned(mantissa_bits=5)),
    )
    assert config.resolution.WhichOneof("kind") == "binned"
    config.resolution.exact.max_samples = 1_000_000
    assert config.resolution.WhichOneof("kind") == "exact"
    assert stream_pb2.StreamConfig().resolution.WhichOneof("kind") is None  # server default


# --- naming rules, checked on the descriptors --------------------------------------------------


def _all_files() -> list[descriptor.FileDescriptor]:
    return [_generated_module(name).DESCRIPTOR for name in PROTO_FILES]


def _enums(
    container: descriptor.FileDescriptor | descriptor.Descriptor,
) -> Iterator[descriptor.EnumDescriptor]:
    if isinstance(container, descriptor.FileDescriptor):
        yield from container.enum_types_by_name.values()
        messages = container.message_types_by_name.values()
    else:
        yield from container.enum_types
        messages = container.nested_types
    for message in messages:
        yield from _enums(message)


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_every_file_is_in_package_evalstream_v1() -> None:
    assert PROTO_FILES, "no .proto files under proto/"
    for file in _all_files():
        assert file.package == "evalstream.v1", file.name
        assert file.name.startswith("evalstream/v1/"), file.name


def test_every_enum_starts_with_its_unspecified_zero() -> None:
    enums = [enum for file in _all_files() for enum in _enums(file)]
    assert enums
    for enum in enums:
        zero = enum.values[0]
        assert zero.number == 0, f"{enum.full_name}: first value {zero.name} is not 0"
        assert zero.name == f"{_upper_snake(enum.name)}_UNSPECIFIED", enum.full_name
        for value in enum.values:
            assert value.name.startswith(_upper_snake(enum.name) + "_"), value.name


def test_service_has_the_agreed_rpcs() -> None:
    services = [s for file in _all_files() for s in file.services_by_name.values()]
    assert [s.full_name for s in services] == ["evalstream.v1.EvalstreamService"]
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in services[0].methods}
    assert methods == EXPECTED_RPCS
    for name in EXPECTED_RPCS:  # the generated stub exposes each one
        assert hasattr(service_pb2_grpc.EvalstreamServiceServicer, name)


def test_every_rpc_has_its_own_request_and_response() -> None:
    seen: set[str] = set()
    for file in _all_files():
        for service in file.services_by_name.values():
            for method in service.methods:
                assert method.input_type.name == f"{method.name}Request", method.full_name
                assert method.output_type.name == f"{method.name}Response", method.full_name
                for message in (method.input_type, method.output_type):
                    assert message.full_name not in seen, f"{message.full_name} used twice"
                    seen.add(message.full_name)
