# syntax=docker/dockerfile:1
# evalstream service image: `docker build -t evalstream .` from the repository root.
# CI has no container engine, so the build itself is not exercised there; hadolint lints this
# file (tests/deploy/test_dockerfile.py). See docs/operations.md.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- builder: a virtual environment with the project installed as the Makefile does --------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A C compiler for the compiled ingest kernel (service/evalstream_server/engine/_fastcount.c). It
# stays in this stage: the runtime stage copies the built extension, not the compiler. Not pinned:
# libc6-dev must match the base image's libc6, whichever Debian point release that is.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY client ./client
COPY service ./service
# Every dependency is pinned by constraints.txt (the versions the test suite ran with).
RUN pip install --no-cache-dir -c constraints.txt ./client .

# --- runtime: the venv only, as a non-root user ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 evalstream \
    && useradd --system --uid 10001 --gid evalstream --no-create-home \
        --home-dir /var/lib/evalstream --shell /usr/sbin/nologin evalstream \
    && mkdir -p /var/lib/evalstream \
    && chown evalstream:evalstream /var/lib/evalstream
COPY --from=builder /opt/venv /opt/venv
# pip treats the compiled ingest kernel as optional (without a compiler the engine counts with
# numpy); this image must have it, and it must load here, without the builder's toolchain.
RUN python -c "from evalstream_server.engine import fastcount; assert fastcount.available()"
# Numeric so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/evalstream
VOLUME ["/var/lib/evalstream"]
# 50051: gRPC API (with grpc.health.v1 and reflection); 9464: Prometheus metrics.
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, grpc; from grpc_health.v1 import health_pb2 as pb, health_pb2_grpc as rpc; stub = rpc.HealthStub(grpc.insecure_channel('127.0.0.1:50051')); reply = stub.Check(pb.HealthCheckRequest(service=''), timeout=3); sys.exit(reply.status != pb.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["evalstream"]
# /metrics listens on every interface, so it requires a bearer token: mount one at
# /run/secrets/metrics-token (compose secret, Kubernetes Secret; docs/operations.md, "Metrics
# access"). Without the file the server refuses to start and says so.
CMD ["serve", "--host", "0.0.0.0", "--grpc-port", "50051", "--metrics-host", "0.0.0.0", "--metrics-port", "9464", "--metrics-token-file", "/run/secrets/metrics-token", "--data-dir", "/var/lib/evalstream"]
