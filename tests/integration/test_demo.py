"""`bedside demo` as an operator meets it: it signs a user in and the ward view is live.

The demo runs against the session's stack (already up: the demo leaves it be) with a small
cohort; as soon as it prints the sign-in link, Chromium opens it like a person would and
waits for the live ward view with charts drawn from the streaming data. The demo then
prints its summary and says that the page stops with it (``--no-stay``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from streams.settings import Settings

BROWSER = Path(__file__).parents[1] / "browser"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
BEDSIDE = shutil.which("bedside", path=str(Path(sys.executable).parent)) or "bedside"


def test_the_demo_signs_a_user_in_to_a_live_ward_view(
    stack_env_vars: dict[str, str],
    stack_settings: Settings,
    port: Callable[[], int],
    tmp_path: Path,
) -> None:
    if not (BROWSER / "node_modules" / "playwright-core").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=BROWSER, check=True)
    web_port = port()
    env = {
        **os.environ,
        **stack_env_vars,
        "PYTHONUNBUFFERED": "1",
        "BEDSIDE_WEB__PORT": str(web_port),
        "BEDSIDE_WORKER__APP_ID": f"demo-{uuid.uuid4().hex[:6]}",
        "BEDSIDE_WORKER__DATA_DIR": str(tmp_path / "worker"),
    }
    demo = subprocess.Popen(
        [BEDSIDE, "demo", "--patients", "8", "--duration", "1", "--speed", "90", "--no-stay"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    link, lines = None, []
    deadline = time.monotonic() + 240
    while link is None and time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(rf"(http://127\.0\.0\.1:{web_port}/ui#token=\S+)", line)
        link = found.group(1) if found else None
    assert link is not None, "".join(lines)[-3000:]
    ARTIFACTS.mkdir(exist_ok=True)
    page = subprocess.run(
        ["node", str(BROWSER / "sign_in.mjs"), link, str(ARTIFACTS / "demo-ward-view.png")],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    rest, _ = demo.communicate(timeout=240)
    result = json.loads(page.stdout.strip().splitlines()[-1])
    assert result["ok"], (result, page.stderr[-2000:])
    assert result["rows"] >= 4 and result["who"].startswith("demo-physician")
    assert "#token=" not in result["address"]  # signed in, and the token left the address bar
    assert demo.returncode == 0, rest[-3000:]
    assert "== Bedside demo summary ==" in rest
    assert "stops with the worker now" in rest and "stopped: the worker" in rest
    users = json.loads((Path(stack_settings.stack.dir) / "demo-users.json").read_text())
    assert [u["name"] for u in users["users"]] == ["demo-physician"]
    assert link.split("#token=")[1] not in json.dumps(users)  # only its digest is kept
