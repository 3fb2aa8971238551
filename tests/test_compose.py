"""docker-compose.yml: valid against the Compose specification, and every JustWalk service
runs a command our CLI has. (Docker is not available here, so the stack is not started and
the image is not built: the Dockerfile is checked instruction by instruction.)

Also what keeps clinics apart and traffic encrypted in production: only the TLS proxy
publishes ports (deploy/Caddyfile serves nothing in clear), InfluxDB runs with
authentication and per-clinic read users, and Grafana gets one organisation per clinic from
provisioning generated out of deploy/clinics.json.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from justwalk import dashboards
from justwalk.cli import build_parser, main
from justwalk.clinics import load_clinics
from justwalk.config import Settings
from justwalk.kafka_topics import topic_names
from justwalk.report.browser import PACKAGE as CHROMIUM_PACKAGE

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SPEC = yaml.safe_load(COMPOSE.read_text())
APP_SERVICES = [name for name, svc in SPEC["services"].items() if "build" in svc]
ONE_SHOT = {name for name, svc in SPEC["services"].items() if svc.get("restart") == "no"}
CADDYFILE = (ROOT / "deploy" / "Caddyfile").read_text()


def env_file_vars(name: str) -> set[str]:
    return set(re.findall(r"^(\w+)=", (ROOT / "deploy" / name).read_text(), re.M))


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
    assert svc["command"][0] in ("gateway", "processor", "sink", "alerts", "influx",
                                 "dashboards", "db", "api")


def test_the_image_entrypoint_is_the_justwalk_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["justwalk"]' in dockerfile
    for package in ("justwalk", "ingest", "stream_processors", "sinks"):
        assert f"COPY {package} ./{package}" in dockerfile


CHROMIUM_BINARY = "/usr/bin/chromium"
"""Where Debian's chromium package puts the browser."""
REPORT_FONTS = ("fonts-dejavu-core",)
"""Debian's package of the font the report's page and plots name (DejaVu Sans)."""


def _apt_installs(run: str) -> set[str]:
    """Packages an ``apt-get install`` in a RUN command line installs."""
    packages: set[str] = set()
    for part in re.split(r"&&|;", run):
        words = shlex.split(part)
        if words[:2] == ["apt-get", "install"]:
            packages |= {w for w in words[2:] if not w.startswith("-")}
    return packages


def pdf_problems(dockerfile_text: str) -> list[str]:
    """What keeps the image from printing the reports' PDF (empty: nothing)."""
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile_text.encode()))
    steps = parser.structure
    final = steps[max(i for i, x in enumerate(steps) if x["instruction"] == "FROM"):]
    as_root: list[dict[str, str]] = []
    for step in final:
        if step["instruction"] == "USER":
            break
        as_root.append(step)
    installed = set().union(*(_apt_installs(x["value"]) for x in as_root
                              if x["instruction"] == "RUN"))
    problems = [f"{p} is not apt-get installed as root in the final stage"
                for p in (CHROMIUM_PACKAGE, *REPORT_FONTS) if p not in installed]
    configured = Settings.from_env(parser.envs).chromium_binary
    if configured != CHROMIUM_BINARY:
        problems.append(f"the image's chromium_binary setting is {configured!r}, not "
                        f"{CHROMIUM_BINARY!r}")
    return problems


def test_the_image_installs_chromium_and_points_the_setting_at_it() -> None:
    """The reports' PDF needs Debian's chromium in the image (else the API answers 503)."""
    assert pdf_problems((ROOT / "Dockerfile").read_text()) == []
    api_env = SPEC["services"]["api"].get("environment", {})
    assert api_env.get("JUSTWALK_CHROMIUM_BINARY", CHROMIUM_BINARY) == CHROMIUM_BINARY


def test_an_image_without_chromium_fails_the_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    without = text.replace(" chromium ", " ", 1)
    assert without != text
    assert pdf_problems(without) == ["chromium is not apt-get installed as root in the final "
                                     "stage"]
    unset = text.replace(f"ENV JUSTWALK_CHROMIUM_BINARY={CHROMIUM_BINARY}\n", "")
    assert unset != text
    assert pdf_problems(unset) == ["the image's chromium_binary setting is '', not "
                                   f"'{CHROMIUM_BINARY}'"]
    after_user = text.replace("USER justwalk\n", "") .replace(
        "FROM python:3.11-slim\n", "FROM python:3.11-slim\nUSER justwalk\n")
    assert len(pdf_problems(after_user)) == 1 + len(REPORT_FONTS)


def test_dependencies_wait_for_health_and_the_topics() -> None:
    services = SPEC["services"]
    assert {"kafka-topics", "influxdb-setup", "grafana-provisioning", "grafana-orgs",
            "db-migrate"} == ONE_SHOT
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services
            expected = ("service_completed_successfully" if dep in ONE_SHOT
                        else "service_healthy")
            assert cond["condition"] == expected, (name, dep)
            if expected == "service_healthy":
                assert "healthcheck" in services[dep], dep
    for name in ("gateway", "processor", "sink", "alerts"):
        assert services[name]["depends_on"]["kafka-topics"]
    assert "influxdb" in services["sink"]["depends_on"]
    # the clinics' databases (and rollup CQs) exist before the sink writes its first record
    assert "influxdb-setup" in services["sink"]["depends_on"]
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


def test_only_the_tls_proxy_publishes_ports() -> None:
    services = SPEC["services"]
    assert {name for name, svc in services.items() if "ports" in svc} == {"proxy"}
    proxy = services["proxy"]
    published = {p.rsplit(":", 1)[1] for p in proxy["ports"]}
    assert published == {"8443", "3000"}
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    # the Caddyfile serves those two ports with TLS only, and no plain-HTTP listener at all
    sites = re.findall(r"^(\S+):(\d+) \{\n(.*?)^\}", CADDYFILE, re.M | re.S)
    assert {port for _, port, _ in sites} == published
    upstream = {"8443": "gateway:8080", "3000": "grafana:3000"}
    for host, port, body in sites:
        assert host == "{$JUSTWALK_PUBLIC_HOST:localhost}" and "http://" not in host
        assert re.search(r"^\s*tls \{\$JUSTWALK_TLS:internal\}$", body, re.M), port
        assert re.search(rf"^\s*reverse_proxy {upstream[port]}$", body, re.M), port
    assert re.search(r"^\s*auto_https disable_redirects$", CADDYFILE, re.M)
    assert "http://" not in CADDYFILE.replace("# ", "")
    # behind it, Grafana knows it is served over HTTPS; devices reach the gateway there
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SERVER_ROOT_URL"].startswith("${GRAFANA_ROOT_URL:-https://")
    assert grafana["GF_SECURITY_COOKIE_SECURE"] == "true"
    # the gateway's upload limit fits through the proxy
    body_max = re.search(r"max_size (\d+)MiB", CADDYFILE)  # MiB: 2**20 bytes in Caddy
    assert body_max and int(body_max[1]) * 2**20 > Settings().max_upload_bytes


def test_influxdb_requires_auth_and_each_clinic_gets_a_read_user() -> None:
    services = SPEC["services"]
    influx = services["influxdb"]["environment"]
    assert influx["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert not any("READ_USER" in k or k == "INFLUXDB_DB" for k in influx)  # no shared reader
    setup = services["influxdb-setup"]
    assert setup["command"] == ["influx", "setup"]
    env = {**SPEC["x-justwalk-env"]}
    assert env["JUSTWALK_INFLUX_USERNAME"].startswith("${INFLUXDB_ADMIN_USER")
    mounts = {m["target"]: m for m in setup["volumes"] if isinstance(m, dict)}
    assert mounts[env["JUSTWALK_CLINICS"]]["source"] == "./deploy/clinics.json"
    assert setup["env_file"] == ["./deploy/clinics.env"]
    # the example clinics file is valid and every password it names is in the env example
    clinics = load_clinics(ROOT / "deploy" / "clinics.example.json")
    assert {c.influx_read_password_env for c in clinics} <= env_file_vars("clinics.env.example")
    assert "cp deploy/clinics.example.json deploy/clinics.json" in (
        ROOT / "deploy" / "README.md").read_text()


def test_grafana_reaches_influxdb_only_through_the_gate() -> None:
    services = SPEC["services"]
    gate = services["influxdb-gate"]
    assert build_parser().parse_args(gate["command"]).func.__name__ == "_cmd_influx_gate"
    env = gate["environment"]
    settings = Settings.from_env(env)
    assert settings.influx_url == "http://influxdb:8086"
    assert not any("USERNAME" in k or "PASSWORD" in k for k in env)  # forwards users' own
    grafana = services["grafana"]
    assert grafana["environment"]["INFLUXDB_URL"] == (
        f"http://influxdb-gate:{settings.influx_gate_port}")
    assert "influxdb-gate" in grafana["depends_on"] and "healthcheck" in gate
    # nothing else of Grafana's names InfluxDB itself
    assert "influxdb:8086" not in json.dumps(grafana)


def test_grafana_gets_one_organisation_per_clinic_from_generated_provisioning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = SPEC["services"]
    volume = "grafana-provisioning"
    assert volume in SPEC["volumes"]
    root = dashboards.CONTAINER_ROOT
    # 1. generated from deploy/clinics.json by our CLI, into the volume
    gen = services["grafana-provisioning"]
    args = build_parser().parse_args(gen["command"])
    assert f"{volume}:{args.out}" in gen["volumes"]
    assert {m["target"]: m["source"] for m in gen["volumes"] if isinstance(m, dict)}[
        str(args.clinics)] == "./deploy/clinics.json"
    # 2. the organisations created on Grafana's data volume before it starts
    orgs = services["grafana-orgs"]
    assert orgs["image"] == services["grafana"]["image"]
    assert f"{volume}:{root}:ro" in orgs["volumes"]
    assert "grafana-data:/var/lib/grafana" in orgs["volumes"]
    assert "./deploy/grafana/create-orgs.sh:/etc/justwalk/create-orgs.sh:ro" in orgs["volumes"]
    assert orgs["entrypoint"][-2:] == ["--start-server", f"{root}/organisations.txt"]
    # 3. Grafana reads exactly that tree
    grafana = services["grafana"]
    assert f"{volume}:{root}:ro" in grafana["volumes"]
    assert "grafana-data:/var/lib/grafana" in grafana["volumes"]
    env = grafana["environment"]
    assert env["GF_PATHS_PROVISIONING"] == f"{root}/provisioning"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(
        dashboards.CONTAINER_DASHBOARDS + "/")
    assert env["GF_USERS_AUTO_ASSIGN_ORG_ID"] == "1"  # new users see no clinic
    assert set(grafana["depends_on"]) >= {"grafana-orgs", "influxdb-setup"}

    # what the generator writes for the example clinics, as the service runs it
    secrets = env_file_vars("clinics.env.example")
    for var in secrets:
        monkeypatch.setenv(var, "pw")
    out = tmp_path / "grafana"
    assert main(["dashboards", "build", "--clinics",
                 str(ROOT / "deploy" / "clinics.example.json"), "--out", str(out)]) == 0
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert "organisations.txt" in written and "provisioning/datasources/justwalk.yaml" in written
    provider = yaml.safe_load((out / "provisioning/dashboards/justwalk.yaml").read_text())
    paths = {pr["options"]["path"] for pr in provider["providers"]}
    assert paths == {dashboards.CONTAINER_DASHBOARDS}
    assert {f"dashboards/{n}.json" for n in dashboards.DASHBOARDS} <= written
    # every $VAR the provisioning reads is set for Grafana (environment or env_file)
    text = "".join(p.read_text() for p in (out / "provisioning").rglob("*.yaml"))
    for var in set(re.findall(r"\$([A-Z][A-Z0-9_]+)", text)):
        assert var in env or (var in secrets and grafana["env_file"] ==
                              ["./deploy/clinics.env"]), var
    # a missing read password stops the generator (and so Grafana) with its name
    monkeypatch.delenv("JUSTWALK_INFLUX_READ_PASSWORD_CLINIC_B")
    assert main(["dashboards", "build", "--clinics",
                 str(ROOT / "deploy" / "clinics.example.json"), "--out", str(out)]) == 2


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
