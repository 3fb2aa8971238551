"""docker-compose.yml: valid against the Compose specification, and every JustWalk service
runs a command our CLI has. (Docker is not available here, so the stack is not started.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from justwalk.cli import build_parser
from justwalk.config import Settings
from justwalk.kafka_topics import topic_names

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SPEC = yaml.safe_load(COMPOSE.read_text())
APP_SERVICES = [name for name, svc in SPEC["services"].items() if "build" in svc]


def test_valid_against_the_compose_specification() -> None:
    check = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_invalid_file_fails_the_check(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    healthcheck:\n      test:",
                                               "    healthcheck:\n      tset:", 1))
    check = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_app_service_runs_a_real_justwalk_subcommand(service: str) -> None:
    svc = SPEC["services"][service]
    args = build_parser().parse_args(svc["command"])
    assert callable(args.func)
    assert svc["command"][0] in ("gateway", "processor", "sink", "alerts")


def test_the_image_entrypoint_is_the_justwalk_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["justwalk"]' in dockerfile
    for package in ("justwalk", "ingest", "stream_processors", "sinks"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_dependencies_wait_for_health_and_the_topics() -> None:
    services = SPEC["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services
            expected = ("service_completed_successfully" if dep == "kafka-topics"
                        else "service_healthy")
            assert cond["condition"] == expected, (name, dep)
            if expected == "service_healthy":
                assert "healthcheck" in services[dep], dep
    for name in ("gateway", "processor", "sink", "alerts"):
        assert services[name]["depends_on"]["kafka-topics"]
    assert "influxdb" in services["sink"]["depends_on"]
    assert services["processor"]["deploy"]["replicas"]


def test_topics_created_are_the_pipelines_topics() -> None:
    script = SPEC["services"]["kafka-topics"]["command"][0]
    listed = re.search(r"for topic in (.*?); do", script)
    compacted = re.findall(r"--topic ([\w.]+) [^;]*?--config cleanup.policy=compact", script)
    settings = Settings()
    assert compacted == [settings.topic_state]
    assert listed and listed[1].split() + compacted == topic_names(settings)


def test_no_secret_is_written_in_the_file() -> None:
    text = COMPOSE.read_text()
    for key in ("PASSWORD", "CLUSTER_ID", "WEBHOOK_URL", "EMAILS"):
        for line in text.splitlines():
            m = re.match(rf"\s*(\w*{key}\w*):\s*(.+)", line)
            if m:
                assert m[2].startswith("${"), line
    example = (ROOT / "deploy" / "env.example").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    documented = set(re.findall(r"^(\w+)=", example, re.M))
    assert used <= documented, f"not in deploy/env.example: {sorted(used - documented)}"


def test_grafana_mounts_the_provisioning() -> None:
    volumes = SPEC["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/justwalk.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in volumes
    env = SPEC["services"]["grafana"]["environment"]
    provisioning = "".join(p.read_text() for p in
                           (ROOT / "deploy/grafana/provisioning").rglob("*.yaml"))
    for var in set(re.findall(r"\$([A-Z][A-Z0-9_]+)", provisioning)):
        assert var in env, f"Grafana's provisioning reads ${var}; compose does not set it"


def test_every_justwalk_command_in_deploy_readme_parses() -> None:
    import shlex

    readme = (ROOT / "deploy" / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    commands = [ln.split(" #")[0].strip() for b in blocks
                for ln in b.replace("\\\n", " ").splitlines()]
    commands = [c for c in commands if c.startswith("justwalk ")]
    assert len(commands) >= 2
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert callable(args.func), command


def test_processors_read_the_mounted_patient_profiles_and_risk_policies() -> None:
    from stream_processors.patient_profiles import load_patient_profiles
    from stream_processors.risk_policies import load_risk_policies

    svc = SPEC["services"]["processor"]
    env = svc["environment"]
    # ${VAR:-default} as compose resolves it without deploy/.env
    settings = Settings.from_env({k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v))
                                  for k, v in env.items()})
    mounts = {m["target"]: m for m in svc["volumes"]}
    for name, path in (("patient_profiles", settings.patient_profiles),
                       ("risk_policies", settings.risk_policies)):
        mount = mounts[str(path)]
        assert mount["source"] == f"./deploy/{name}.json" and mount["read_only"]
        # a missing file is an error at `up`, not an empty directory in the container
        assert mount["bind"]["create_host_path"] is False
        # the example to copy exists and is valid for the processor's loader
        assert (ROOT / "deploy" / f"{name}.example.json").exists()
        assert f"cp deploy/{name}.example.json deploy/{name}.json" in (
            ROOT / "deploy" / "README.md").read_text()
    heights = load_patient_profiles(ROOT / "deploy" / "patient_profiles.example.json")
    assert heights and all(re.fullmatch(r"pt-\d{4}", p) for p in heights)  # pseudonymous
    default, clinics = load_risk_policies(ROOT / "deploy" / "risk_policies.example.json")
    assert default.policy.threshold == 50 and clinics
    assert settings.session_idle_timeout_s > 0
