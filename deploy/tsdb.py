"""The local time-series server: bucket check and read-back helpers (not on the hot path).

Locally VictoriaMetrics stands in for InfluxDB: it takes InfluxDB v2 writes unchanged and
ignores org and bucket. It stores each field as the metric ``<measurement>_<field>`` with
tags as labels, and acknowledges writes before they are searchable, hence
:func:`force_flush` before reading back.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from streams.settings import InfluxSettings

READY_MEASUREMENT = "bedside_stack"


def ensure_bucket(url: str, influx: InfluxSettings) -> None:
    """Prove the configured bucket takes InfluxDB v2 writes by writing a stack marker point.

    VictoriaMetrics has no buckets to create; on InfluxDB 2.x the bucket must exist and
    this write fails with the server's reason if it does not.
    """
    with InfluxDBClient(
        url=url,
        token=influx.token.get_secret_value(),
        org=influx.org,
        timeout=influx.timeout_ms,
    ) as client:
        now_s = int(datetime.now(UTC).timestamp())
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=influx.bucket,
            record=f"{READY_MEASUREMENT},component=stack up=1i {now_s}",
            write_precision="s",
        )


def force_flush(url: str) -> None:
    """Make acknowledged writes searchable now (VictoriaMetrics only)."""
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10) as response:
        response.read()


def export_series(url: str, match: str) -> list[dict[str, Any]]:
    """Raw samples of every series matching a PromQL selector.

    Example selector: ``vitals_value{patient_id="p1"}``.
    """
    # the default range ends now: include (clock-skewed) future samples too
    end = int(datetime.now(UTC).timestamp()) + 7 * 86400
    query = urllib.parse.urlencode({"match[]": match, "start": 0, "end": end})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line]


def delete_series(url: str, match: str) -> None:
    """Delete every series matching a PromQL selector (VictoriaMetrics; local stack only)."""
    query = urllib.parse.urlencode({"match[]": match})
    request = urllib.request.Request(
        f"{url}/api/v1/admin/tsdb/delete_series?{query}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
