"""Production deployment files, checked statically (no container engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from streams.settings import iter_setting_env_vars

DEPLOY = Path(__file__).parents[3] / "deploy"
SETTINGS = set(iter_setting_env_vars())
MEASUREMENTS = {"glucose", "vitals", "labs", "risk", "alerts", "alarm_quality"}
TAGS = {"patient_id", "code", "score", "kind", "severity", "transition", "judged"}


def yaml_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_yaml_file_parses(path: Path) -> None:
    assert yaml_documents(path)


def bedside_variables() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    compose = yaml_documents(DEPLOY / "compose" / "compose.yaml")[0]
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        found[f"compose:{name}"] = {k for k in env if k.startswith("BEDSIDE_")}
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in yaml_documents(path):
            data = doc.get("data") or doc.get("stringData") or {}
            found[f"k8s:{path.name}"] = {k for k in data if k.startswith("BEDSIDE_")}
    return found


def test_every_bedside_variable_is_a_real_setting() -> None:
    found = bedside_variables()
    assert found["compose:worker"] and found["k8s:configmap.yaml"]
    for where, names in found.items():
        assert names <= SETTINGS, (where, sorted(names - SETTINGS))


def test_workers_are_a_statefulset_with_volumes_probes_and_settings() -> None:
    (sts,) = yaml_documents(DEPLOY / "k8s" / "statefulset.yaml")
    assert sts["kind"] == "StatefulSet" and sts["spec"]["volumeClaimTemplates"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/serving"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {"bedside-settings", "bedside-secrets"}
    config = yaml_documents(DEPLOY / "k8s" / "configmap.yaml")[0]["data"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert (
        config["BEDSIDE_WORKER__DATA_DIR"] in mounts
        and config["BEDSIDE_WORKER__STORE"] == "rocksdb"
    )
    secrets = yaml_documents(DEPLOY / "k8s" / "secret.yaml")[0]["stringData"]
    assert {"BEDSIDE_INFLUX__TOKEN", "BEDSIDE_WEB__TOKEN", "BEDSIDE_SECURITY__SIGNING_KEY"} <= set(
        secrets
    )
    assert not {k for k in config if "TOKEN" in k or "PASSWORD" in k}  # secrets stay secret


def test_compose_creates_every_topic_the_worker_uses() -> None:
    compose = yaml_documents(DEPLOY / "compose" / "compose.yaml")[0]
    script = " ".join(compose["services"]["topics"]["command"])
    created = set(re.search(r"for t in ([^;]+);", script).group(1).split())
    from streams.settings import get_settings

    expected = {t.removeprefix("bedside.") for t in get_settings().topics.all}
    assert created == expected


def test_dashboard_queries_name_what_the_sink_writes() -> None:
    dashboard = json.loads(
        (DEPLOY / "compose" / "grafana" / "dashboards" / "bedside.json").read_text()
    )
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    assert queries
    for query in queries:
        measurements = set(re.findall(r'r\._measurement == "([^"]+)"', query))
        assert measurements and measurements <= MEASUREMENTS, query
        tags = set(re.findall(r"r\.([a-z_]+) ==", query)) - {"_measurement", "_field"}
        assert tags <= TAGS, query
        assert set(re.findall(r'r\._field == "([^"]+)"', query)) <= {"value", "open", "outcome"}


def test_every_compose_variable_is_in_the_env_example_with_no_usable_value() -> None:
    """An operator copies ``.env.example`` to ``.env``: it names every variable the compose
    file reads, each with a placeholder that says to replace it (never a working secret)."""
    used = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose" / "compose.yaml").read_text()))
    example = {}
    for line in (DEPLOY / "compose" / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            example[name] = value
    assert used and used == set(example)
    assert all(value.startswith("replace-with-") for value in example.values()), example


def test_the_compose_file_runs_the_kafka_version_the_tests_run() -> None:
    pinned = re.search(r"<kafka.version>([^<]+)<", (DEPLOY / "kafka" / "pom.xml").read_text())
    assert pinned
    compose = yaml_documents(DEPLOY / "compose" / "compose.yaml")[0]
    images = {s["image"] for s in compose["services"].values() if "kafka" in s.get("image", "")}
    assert images == {f"apache/kafka:{pinned[1]}"}
