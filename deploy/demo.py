"""``bedside demo``: the whole product on the embedded stack, with a live console.

Starts the local stack (unless it runs), a worker with the shipped models, simulates a cohort
(``deploy.simulate``) and publishes it accelerated; every 2 s the console shows throughput,
open alerts by severity and the latest transitions with their reasons. The demo signs a user
in: it writes a users file with one physician of every ward and prints the care-team page's
sign-in link. Each run starts with empty series for the simulated patients (the local
time-series server keeps data between runs). At the end, or on Ctrl-C (then partial), it
prints a summary: events, alerts by kind, alarm precision / recall / lead against the
simulation's ground truth, produce -> alert latency. With ``--stay`` (the default on a
terminal) the stack, the worker and the page stay up after the summary until Ctrl-C;
otherwise it says that they stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson
from aiokafka import AIOKafkaConsumer

from streams.access.users import ALL_WARDS, Role, add_user
from streams.engine.broker import client_options
from streams.settings import Settings

from .benchkit import p50_p99
from .simulate import Cohort, Plan, build_cohort, plan, publish
from .tsdb import delete_series

HORIZON_S = {
    "predicted_low": 30 * 60,
    "low": 30 * 60,
    "news2_medium": 12 * 3600,
    "news2_high": 12 * 3600,
    "deterioration": 12 * 3600,  # the deterioration model's alarm, where it is enabled
}
TRUTH_OF = {
    "predicted_low": "hypoglycaemia",
    "low": "hypoglycaemia",
    "urgent_low": "hypoglycaemia",
    "news2_medium": "deterioration",
    "news2_high": "deterioration",
    "deterioration": "deterioration",
}
OPTIONAL = {"deterioration"}  # its row is shown only when the model raised it


DEMO_USER = "demo-physician"
DEMO_PATIENTS = 'patient_id=~"sim-.*"'  # the simulator's patient ids


def _get(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3) as r:
            return json.loads(r.read())
    except OSError:
        return None


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def alarm_quality(opened: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Per alerting kind: alarms followed by its truth within the horizon, truths warned."""
    table: dict[str, Any] = {}
    for kind, horizon in HORIZON_S.items():
        wanted = TRUTH_OF[kind]
        onsets: dict[str, list[float]] = {}
        for t in truth:
            if t["kind"] == wanted:
                at = t["event"] if wanted == "deterioration" else t["onset"]
                onsets.setdefault(t["patient_id"], []).append(_seconds(at))
        alarms = [a for a in opened if a["kind"] == kind]
        hits = sum(
            any(
                0 <= o - _seconds(a["opened_at"]) <= horizon
                or (kind == "low" and abs(o - _seconds(a["opened_at"])) <= horizon)
                for o in onsets.get(a["patient_id"], [])
            )
            for a in alarms
        )
        leads, events = [], 0
        for patient, times in onsets.items():
            mine = [_seconds(a["opened_at"]) for a in alarms if a["patient_id"] == patient]
            for onset in times:
                events += 1
                before = [onset - t for t in mine if 0 <= onset - t <= horizon]
                if before:
                    leads.append(max(before) / 60)
        table[kind] = {
            "alarms": len(alarms),
            "precision": hits / len(alarms) if alarms else None,
            "events": events,
            "recall": len(leads) / events if events else None,
            "median_lead_min": statistics.median(leads) if leads else None,
        }
    return table


class Console:
    """Collects alert transitions (from now on) and renders the live lines."""

    def __init__(self, settings: Settings, worker_url: str, token: str) -> None:
        self.settings, self.url, self.token = settings, worker_url, token
        self.opened: list[dict[str, Any]] = []
        self.by_kind: dict[str, int] = {}
        self.recent: list[dict[str, Any]] = []
        self.latencies: list[float] = []
        self.last_observations = 0
        self.last_time = time.monotonic()
        self.summarised = False

    async def follow(self, the_plan: Plan, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.topics.alerts,
            group_id=None,
            auto_offset_reset="latest",
            **client_options(self.settings.kafka),
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    now = time.time()
                    for record in records:
                        event = orjson.loads(record.value)
                        self.recent = (self.recent + [event])[-5:]
                        if event["transition"] != "opened":
                            continue
                        self.opened.append(event)
                        self.by_kind[event["kind"]] = self.by_kind.get(event["kind"], 0) + 1
                        cgm = event.get("evidence", {}).get("recent_cgm") or []
                        if cgm:
                            sent = the_plan.produced_at.get((event["patient_id"], cgm[-1]["at"]))
                            if sent is not None:
                                self.latencies.append((now - sent) * 1000)
        finally:
            await consumer.stop()

    def lines(self, sent: int, total: int) -> list[str]:
        stats = _get(f"{self.url}/stats") or {}
        alerts = _get(f"{self.url}/v1/alerts", self.token) or {"open": []}
        observations = stats.get("observations", 0)
        now = time.monotonic()
        rate = (observations - self.last_observations) / max(now - self.last_time, 1e-6)
        self.last_observations, self.last_time = observations, now
        severities: dict[str, int] = {}
        for a in alerts["open"]:
            severities[a["severity"]] = severities.get(a["severity"], 0) + 1
        dead = sum((stats.get("dead_letters") or {}).values())
        out = [
            f"sent {sent:,}/{total:,} records | worker: {observations:,} observations, "
            f"{rate:,.0f}/s, {dead} dead-lettered",
            "open alerts: "
            + (", ".join(f"{k} {v}" for k, v in sorted(severities.items())) or "none"),
        ]
        for event in self.recent[::-1]:
            out.append(
                f"  {event['transition']:>14} {event['severity']:<8} {event['patient_id']} "
                f"{event['kind']}: {event['reason'][:90]}"
            )
        return out


def run_demo(
    settings: Settings,
    *,
    patients: int,
    hours: float,
    speed: float,
    fmt: str,
    state_dir: Path,
    stay: bool,
) -> None:
    from .stack import Health, LocalStack

    stack = LocalStack(settings)
    started_stack = not all(c.health is Health.HEALTHY for c in stack.status())
    if started_stack:
        click.echo("starting the embedded stack ...")
        stack.up(echo=click.echo)
    delete_series(settings.influx.url, "{" + DEMO_PATIENTS + "}")  # a run shows only its own
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    users = state_dir / "demo-users.json"
    token = add_user(users, DEMO_USER, Role.PHYSICIAN, [ALL_WARDS])
    env = {
        **os.environ,
        "BEDSIDE_WEB__USERS_FILE": str(users),
        "BEDSIDE_SECURITY__SIGNING_KEY": os.environ.get(
            "BEDSIDE_SECURITY__SIGNING_KEY", secrets.token_hex(32)
        ),
    }
    bedside = str(Path(sys.executable).parent / "bedside")
    with open(logs / "demo-worker.log", "wb") as log:
        worker = subprocess.Popen(
            [bedside, "worker"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://{settings.web.host}:{settings.web.port}"
    sign_in = f"{url}/ui#token={token}"
    console = Console(settings, url, token)
    cohort, the_plan = None, None
    try:
        click.echo(f"starting a worker (log: {logs / 'demo-worker.log'}) ...")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (_get(f"{url}/ready") or {}).get("ready"):
            if worker.poll() is not None:
                msg = f"the worker exited: see {logs / 'demo-worker.log'}"
                raise click.ClickException(msg)
            time.sleep(0.5)
        click.echo(
            f"simulating {patients} patients over {hours:g} h (simglucose + ward vitals) ..."
        )
        cohort = build_cohort(patients, hours)
        the_plan = plan(cohort, settings, fmt)
        truth_file = state_dir / "demo-truth.jsonl"
        truth_file.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in cohort.truth))
        click.echo(
            f"publishing {len(the_plan.sends):,} records at {speed:g}x "
            f"(faults: {the_plan.counts})\ncare-team page ({DEMO_USER}): {sign_in}"
        )
        asyncio.run(_live(settings, console, cohort, the_plan, speed))
        summary(console, cohort, the_plan, url, sign_in if stay else None)
        if stay:
            click.echo(f"\nthe stack, the worker and the page stay up: {sign_in}")
            click.echo("press Ctrl-C to stop them")
            while worker.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted")
        if cohort is not None and the_plan is not None and not console.summarised:
            summary(console, cohort, the_plan, url, None, partial=True)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        if started_stack:
            stack.down()
        click.echo(
            "stopped: the worker"
            + (" and the stack" if started_stack else " (the stack was already up: kept)")
        )


async def _live(
    settings: Settings, console: Console, cohort: Cohort, the_plan: Plan, speed: float
) -> None:
    stop = asyncio.Event()
    follower = asyncio.create_task(console.follow(the_plan, stop))
    progress = {"sent": 0}
    publisher = asyncio.create_task(
        publish(
            settings,
            cohort,
            the_plan,
            speed,
            progress=lambda sent, total: progress.update(sent=sent),
            stop=stop,
        )
    )
    try:
        while not publisher.done():
            await asyncio.sleep(2)
            click.clear()
            click.echo("\n".join(console.lines(progress["sent"], len(the_plan.sends))))
        await asyncio.sleep(8)  # the last batches reach the alerts topic
    finally:
        stop.set()
        await asyncio.gather(publisher, follower, return_exceptions=True)


def summary(
    console: Console,
    cohort: Cohort,
    the_plan: Plan,
    url: str,
    sign_in: str | None,
    *,
    partial: bool = False,
) -> None:
    """The run's figures; ``sign_in``: the page's link while it stays up (None: it stops)."""
    console.summarised = True
    stats = _get(f"{url}/stats") or {}
    latencies = console.latencies
    quality = alarm_quality(console.opened, cohort.truth)
    click.echo("\n== Bedside demo summary" + (" (partial: interrupted) ==" if partial else " =="))
    click.echo(
        f"records sent {len(the_plan.sends):,} ({the_plan.counts}); observations "
        f"ingested {stats.get('observations', 0):,}; dead-lettered "
        f"{sum((stats.get('dead_letters') or {}).values())}"
    )
    click.echo(
        "alerts opened by kind: "
        + (", ".join(f"{k} {v}" for k, v in sorted(console.by_kind.items())) or "none")
    )
    for kind, row in quality.items():
        if kind in OPTIONAL and not row["alarms"]:
            continue

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.0f} %"

        lead = row["median_lead_min"]
        click.echo(
            f"  {kind:<14} alarms {row['alarms']:>4}  precision {pct(row['precision']):>5}"
            f"  recall {pct(row['recall']):>5} of {row['events']} true events"
            f"  median lead {'n/a' if lead is None else f'{lead:.0f} min'}"
        )
    if latencies:
        p50, p99 = p50_p99(latencies)
        click.echo(
            f"produce -> alert latency: p50 {p50:,.0f} ms, "
            f"p99 {p99:,.0f} ms ({len(latencies)} CGM alerts)"
        )
    page = sign_in or "stops with the worker now (--stay keeps it up)"
    click.echo(f"care-team page: {page}  (ground truth: .bedside/demo-truth.jsonl)")
