"""Compose, Kubernetes, Prometheus, Alertmanager and Grafana files: they parse, and they agree.

The cross-references that break silently when one file changes: ports (Dockerfile, scrape config,
compose, Kubernetes), the data directory, the user, probes on the gRPC port, rule files and
dashboards that the configuration points at, and the container arguments.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
GRPC_PORT = 50051
METRICS_PORT = 9464
DATA_DIR = "/var/lib/evalstream"
YAML_FILES = [DEPLOY / "compose.yaml"] + sorted(
    p
    for part in ("prometheus", "alertmanager", "grafana", "k8s")
    for p in (DEPLOY / part).rglob("*")
    if p.suffix in {".yml", ".yaml"}
)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _instruction(dockerfile: list[tuple[str, str]], name: str) -> str:
    (value,) = [args for ins, args in dockerfile if ins == name]
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    """Kubernetes objects by "Kind/name"."""
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            if doc["kind"] != "Kustomization":
                objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


@pytest.fixture(scope="module")
def container(k8s) -> dict:
    (only,) = k8s["StatefulSet/evalstream"]["spec"]["template"]["spec"]["containers"]
    return only


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host path (relative to deploy/) of a compose service's bind mounts."""
    result = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        result[target] = source
    return result


def _container_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def _host_path(service: dict, container_path: str) -> Path:
    """Where a container path of a compose service lives in the repository."""
    path = PurePosixPath(container_path)
    for target, source in _mounts(service).items():
        if source.startswith(".") and path.is_relative_to(target):
            return DEPLOY / source / path.relative_to(target)
    raise AssertionError(f"{container_path} is not bind-mounted from the repository")


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    docs = _docs(path)
    assert docs and all(isinstance(d, dict) for d in docs), path


def test_ports_agree_everywhere(dockerfile, compose, k8s, container):
    assert set(_instruction(dockerfile, "EXPOSE").split()) == {str(GRPC_PORT), str(METRICS_PORT)}
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "evalstream"]
    (targets,) = [c["targets"] for c in job["static_configs"]]
    assert targets == [f"evalstream:{METRICS_PORT}"]  # the compose service, on the metrics port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert _container_ports(compose["services"]["evalstream"]) == {GRPC_PORT, METRICS_PORT}

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    service = k8s["Service/evalstream"]
    for port in service["spec"]["ports"]:
        assert ports[port["targetPort"]] == port["port"], port
    pod = k8s["StatefulSet/evalstream"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    config = k8s["ConfigMap/evalstream-config"]["data"]
    assert config["EVALSTREAM_GRPC_PORT"] == str(GRPC_PORT)
    assert config["EVALSTREAM_METRICS_PORT"] == str(METRICS_PORT)


def test_probes_use_native_grpc_on_the_grpc_port(container):
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"] == {"port": GRPC_PORT}, probe


def test_container_args_from_configmap_equal_the_image_cmd(dockerfile, k8s, container):
    config = k8s["ConfigMap/evalstream-config"]["data"]
    assert container["envFrom"] == [{"configMapRef": {"name": "evalstream-config"}}]
    resolved = [re.sub(r"\$\((\w+)\)", lambda m: config[m[1]], a) for a in container["args"]]
    assert resolved == json.loads(_instruction(dockerfile, "CMD"))
    assert "command" not in container  # keeps the image's ENTRYPOINT


def test_data_directory_is_persistent_everywhere(dockerfile, compose, k8s, container):
    assert json.loads(_instruction(dockerfile, "VOLUME")) == [DATA_DIR]
    assert _mounts(compose["services"]["evalstream"])[DATA_DIR] in compose["volumes"]
    statefulset = k8s["StatefulSet/evalstream"]["spec"]
    claims = {c["metadata"]["name"] for c in statefulset["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[DATA_DIR] in claims
    assert k8s["ConfigMap/evalstream-config"]["data"]["EVALSTREAM_DATA_DIR"] == DATA_DIR


def test_pod_runs_as_the_image_user_with_limits(dockerfile, k8s, container):
    uid, _, gid = _instruction(dockerfile, "USER").partition(":")
    pod = k8s["StatefulSet/evalstream"]["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind


def test_services_and_servicemonitor_select_the_pods(k8s):
    statefulset = k8s["StatefulSet/evalstream"]["spec"]
    pod_labels = statefulset["template"]["metadata"]["labels"]
    assert statefulset["selector"]["matchLabels"].items() <= pod_labels.items()
    headless = k8s[f"Service/{statefulset['serviceName']}"]
    assert headless["spec"]["clusterIP"] == "None"
    for name in ("Service/evalstream", f"Service/{statefulset['serviceName']}"):
        assert k8s[name]["spec"]["selector"].items() <= pod_labels.items(), name
    monitor = k8s["ServiceMonitor/evalstream"]["spec"]
    selected = [
        name
        for name, obj in k8s.items()
        if obj["kind"] == "Service"
        and monitor["selector"]["matchLabels"].items() <= obj["metadata"]["labels"].items()
    ]
    # One Service only, named like the alerts' job label, so that every pod is scraped once.
    assert selected == ["Service/evalstream"]
    port_names = {p["name"] for p in k8s["Service/evalstream"]["spec"]["ports"]}
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics"]
    assert "metrics" in port_names


def test_kustomization_lists_every_manifest():
    (kustomization,) = _docs(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_prometheus_rule_files_and_alertmanager_exist(compose):
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    for rule_file in prometheus["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file(), rule_file
    service = compose["services"]["prometheus"]
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config = _host_path(service, config_flag.split("=", 1)[1])
    assert config == DEPLOY / "prometheus" / "prometheus.yml"
    (managers,) = prometheus["alerting"]["alertmanagers"]
    (target,) = [t for c in managers["static_configs"] for t in c["targets"]]
    host, port = target.split(":")
    assert int(port) in _container_ports(compose["services"][host])
    am = compose["services"]["alertmanager"]
    am_flag = next(a for a in am["command"] if a.startswith("--config.file="))
    assert _host_path(am, am_flag.split("=", 1)[1]) == DEPLOY / "alertmanager" / "alertmanager.yml"


def test_alertmanager_config_is_valid(amtool, run_tool):
    run_tool(amtool, "check-config", DEPLOY / "alertmanager" / "alertmanager.yml")


def test_grafana_provisioning_and_dashboards_are_mounted(compose):
    grafana = compose["services"]["grafana"]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards/evalstream.yml").read_text())[
        "providers"
    ]
    dashboards = _host_path(grafana, provider["options"]["path"])
    assert sorted(p.name for p in dashboards.glob("*.json")) == [
        "evalstream-overview.json",
        "evalstream-stream.json",
    ]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(grafana, home).is_file()
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    match = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"])
    assert match, source["url"]
    assert int(match[2]) in _container_ports(compose["services"][match[1]])


def test_compose_images_are_pinned_and_triton_gets_a_gpu(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: pin {image}"
    triton = compose["services"]["triton"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", triton["image"])
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert _mounts(triton)["/models"] == "./triton/model_repository"
    assert "--model-repository=/models" in triton["command"]
    evalstream = compose["services"]["evalstream"]
    assert evalstream["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (DEPLOY / evalstream["build"]["context"] / "Dockerfile").is_file()


def test_metrics_on_every_interface_require_the_token_everywhere(
    dockerfile, compose, k8s, container
):
    """The image serves /metrics on 0.0.0.0, so it requires a bearer token (the server refuses
    to start otherwise); every deployment mounts the token where the image reads it, and every
    scraper presents the same secret."""
    cmd = json.loads(_instruction(dockerfile, "CMD"))
    assert cmd[cmd.index("--metrics-host") + 1] == "0.0.0.0"
    token_path = cmd[cmd.index("--metrics-token-file") + 1]
    assert token_path == "/run/secrets/metrics-token"
    # compose: the secret of that name, mounted in evalstream and in Prometheus
    name = Path(token_path).name
    assert compose["secrets"][name]["file"] == "./metrics-token"
    for service in ("evalstream", "prometheus"):
        assert name in compose["services"][service]["secrets"], service
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "evalstream"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": token_path}
    # Kubernetes: the Secret's key mounted at the path, and the ServiceMonitor sends it
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {
        v["name"]: v for v in k8s["StatefulSet/evalstream"]["spec"]["template"]["spec"]["volumes"]
    }
    secret = volumes["metrics-token"]["secret"]
    (item,) = secret["items"]
    assert f"{mounts['metrics-token']}/{item['path']}" == token_path
    (endpoint,) = k8s["ServiceMonitor/evalstream"]["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {
        "name": secret["secretName"],
        "key": item["key"],
    }
    assert (REPO / ".gitignore").read_text().count("deploy/metrics-token") == 1
