"""Reading a patient's recent series back (the care-team page's sparklines).

Not on the stream's hot path. Two backends behind one call, chosen by ``influx.read_api``:
``flux`` for InfluxDB 2.x (the query API of ``influxdb-client``), ``prometheus`` for the
local stack's VictoriaMetrics (``/api/v1/export``: field ``value`` of measurement ``m`` is
the metric ``m_value``, tags are labels), ``auto`` asks the server's ``/health`` which it is.
"""

from __future__ import annotations

import csv
import io
import logging
import ssl
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from ..settings import InfluxSettings

log = logging.getLogger(__name__)
Series = dict[str, list[list[float]]]  # code -> [[t_ms, value], ...]


def _label(value: str) -> str:
    """``value`` inside a double-quoted PromQL/MetricsQL string (Go's escapes): quotes,
    backslashes and control characters escaped, so no value can end the string."""
    out = []
    for char in value:
        if char in '\\"':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


_FLUX_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _flux_string(value: str) -> str:
    """``value`` inside a Flux string literal: no quote ends it, no ``${`` interpolates."""
    return value.translate(_FLUX_ESCAPES).replace("${", "\\${")


class SeriesReader:
    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.backend: str | None = None if settings.read_api == "auto" else settings.read_api
        ca = settings.ca_file
        self.tls = ssl.create_default_context(cafile=str(ca)) if ca is not None else None

    async def _backend(self, session: aiohttp.ClientSession) -> str:
        if self.backend is None:
            try:
                async with session.get(f"{self.settings.url}/health") as response:
                    text = await response.text()
                self.backend = "flux" if '"influxdb"' in text else "prometheus"
            except aiohttp.ClientError:
                return "prometheus"  # try again next time
        return self.backend

    async def series(self, patient_id: str, measurement: str, start_ms: int, end_ms: int) -> Series:
        """Points of ``measurement`` (glucose, vitals, labs, risk) for one patient, by code."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_ms / 1000)
        connector = aiohttp.TCPConnector(ssl=self.tls) if self.tls else None
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            if await self._backend(session) == "flux":
                return await self._flux(session, patient_id, measurement, start_ms, end_ms)
            return await self._prometheus(session, patient_id, measurement, start_ms, end_ms)

    async def _prometheus(
        self,
        session: aiohttp.ClientSession,
        patient_id: str,
        measurement: str,
        start_ms: int,
        end_ms: int,
    ) -> Series:
        selector = f'{measurement}_value{{patient_id="{_label(patient_id)}"}}'
        params = {
            "match[]": selector,
            "start": str(start_ms // 1000),
            "end": str(end_ms // 1000 + 1),
        }
        async with session.get(f"{self.settings.url}/api/v1/export", params=params) as response:
            response.raise_for_status()
            body = await response.read()
        out: Series = {}
        for line in body.splitlines():
            if not line.strip():
                continue
            item: dict[str, Any] = orjson.loads(line)
            labels = item.get("metric", {})
            code = labels.get("code") or labels.get("score") or measurement
            points = sorted(zip(item.get("timestamps", []), item.get("values", []), strict=True))
            out.setdefault(code, []).extend([[float(t), float(v)] for t, v in points])
        return out

    async def _flux(
        self,
        session: aiohttp.ClientSession,
        patient_id: str,
        measurement: str,
        start_ms: int,
        end_ms: int,
    ) -> Series:
        query = (
            f'from(bucket: "{_flux_string(self.settings.bucket)}")'
            f" |> range(start: time(v: {start_ms * 1_000_000}),"
            f" stop: time(v: {end_ms * 1_000_000}))"
            f' |> filter(fn: (r) => r._measurement == "{_flux_string(measurement)}"'
            f' and r.patient_id == "{_flux_string(patient_id)}" and r._field == "value")'
            ' |> keep(columns: ["_time", "_value", "code", "score"])'
        )
        headers = {
            "Authorization": f"Token {self.settings.token.get_secret_value()}",
            "Content-Type": "application/vnd.flux",
            "Accept": "application/csv",
        }
        url = f"{self.settings.url}/api/v2/query"
        async with session.post(
            url, params={"org": self.settings.org}, data=query, headers=headers
        ) as response:
            response.raise_for_status()
            text = await response.text()
        out: Series = {}
        for row in csv.DictReader(io.StringIO(text)):
            if not row.get("_time"):
                continue
            t = datetime.fromisoformat(row["_time"].replace("Z", "+00:00")).timestamp() * 1000
            code = row.get("code") or row.get("score") or measurement
            out.setdefault(code, []).append([t, float(row["_value"])])
        return out
