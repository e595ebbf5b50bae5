// Shared by the ward view (/ui) and the patient page (/ui/patients/{id}): sign-in, API calls,
// the live event stream, the monitoring banner and the charts (uPlot, vendored).
"use strict";

const Bedside = (() => {
  const hashToken = new URLSearchParams(location.hash.slice(1)).get("token");
  if (hashToken) {
    sessionStorage.setItem("bedside-token", hashToken);
    history.replaceState(null, "", location.pathname + location.search);  // not in the bar
  }
  const token = () => sessionStorage.getItem("bedside-token") || "";

  async function api(path, options = {}) {
    const headers = {...(options.headers || {})};
    if (token()) headers.Authorization = "Bearer " + token();
    const r = await fetch(path, {...options, headers});
    if (r.status === 401) signIn("Your sign-in is missing or no longer valid.");
    return r;
  }

  function signIn(why) {
    const box = document.getElementById("signin");
    if (!box) return;
    box.hidden = false;
    box.querySelector(".why").textContent = why;
    box.querySelector("form").onsubmit = e => {
      e.preventDefault();
      sessionStorage.setItem("bedside-token", box.querySelector("input").value.trim());
      location.reload();
    };
    offerProvider(box);
  }

  // Sign-in through the hospital's identity provider (OpenID Connect, authorisation code with
  // PKCE), when the server names one: the verifier stays in this tab until the code comes back.
  async function offerProvider(box) {
    if (box.querySelector("button.provider")) return;
    const r = await fetch("/v1/signin/config");
    const config = r.ok ? (await r.json()).oidc : null;
    if (r.status === 503) box.querySelector(".why").textContent += " The hospital sign-in does not answer yet.";
    if (!config) return;
    const button = document.createElement("button");
    button.className = "provider";
    button.textContent = "Sign in with your hospital account";
    button.onclick = () => startProvider(config).catch(error => {
      box.querySelector(".why").textContent = "Sign-in could not start: " + error.message;
    });
    box.prepend(button);
  }
  const base64url = bytes => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const randomText = () => base64url(crypto.getRandomValues(new Uint8Array(32)));
  async function startProvider(config) {
    if (!crypto.subtle) throw new Error("this page must be served over HTTPS");
    const verifier = randomText(), state = randomText();
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    sessionStorage.setItem("bedside-signin", JSON.stringify(
      {verifier, state, back: location.pathname + location.search}));
    const ask = new URLSearchParams({
      response_type: "code", client_id: config.client_id, scope: config.scope, state,
      redirect_uri: location.origin + "/ui/signin", code_challenge: challenge,
      code_challenge_method: "S256"});
    location.assign(config.authorization_endpoint + "?" + ask);
  }
  // /ui/signin: the provider sent the browser back with a code (or an error)
  async function finishSignIn(say) {
    const answer = new URLSearchParams(location.search);
    const asked = JSON.parse(sessionStorage.getItem("bedside-signin") || "null");
    sessionStorage.removeItem("bedside-signin");
    history.replaceState(null, "", location.pathname);  // the code leaves the address bar
    if (answer.get("error")) return say("The hospital sign-in refused: " +
      (answer.get("error_description") || answer.get("error")));
    if (!asked || asked.state !== answer.get("state")) return say(
      "This sign-in answer was not asked for by this tab: start again from the ward view.");
    const r = await fetch("/v1/signin/oidc", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({code: answer.get("code") || "", code_verifier: asked.verifier,
                            redirect_uri: location.origin + "/ui/signin"})});
    const body = await r.json().catch(() => ({}));
    if (!r.ok) return say(`Signed in at the hospital, but not to Bedside: ${body.detail || r.status}`);
    sessionStorage.setItem("bedside-token", body.access_token);
    location.replace(asked.back || "/ui");
  }

  async function me() {
    const r = await api("/v1/me");
    if (!r.ok) return null;
    const user = await r.json();
    const who = document.getElementById("who");
    if (who) who.textContent = `${user.name} · ${user.role} · ${user.wards.join(", ")}`;
    const pick = document.getElementById("ward");
    if (pick && user.ward_choices.length > 1) {  // narrow the view to one ward of theirs
      pick.hidden = false;
      pick.replaceChildren(new Option("all my wards", ""), ...user.ward_choices.map(w => new Option(w, w)));
      pick.value = ward();
      pick.onchange = () => { sessionStorage.setItem("bedside-ward", pick.value); location.reload(); };
    }
    return user;
  }
  const ward = () => sessionStorage.getItem("bedside-ward") || "";
  const wardQuery = () => (ward() ? "?ward=" + encodeURIComponent(ward()) : "");

  // One event stream per page: "alert" (each transition) and "rows" (changed rows, <= 1/s),
  // read with fetch so the token travels in a header, never in a URL. When it ends (the
  // server drops a page that fell behind, a restart, the network), it reconnects and
  // onReload reloads what may have been missed.
  function live(handlers, status, query = "") {
    let lost = false, wait = 1000;
    const dispatch = block => {
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (name === "alert") handlers.onAlert(JSON.parse(data));
      else if (name === "rows") JSON.parse(data).forEach(handlers.onRow);
    };
    async function open() {
      try {
        const r = await api("/v1/ward/stream" + query, {headers: {Accept: "text/event-stream"}});
        if (!r.ok) throw new Error(`stream: ${r.status}`);
        status.textContent = "live";
        status.className = "live";
        wait = 1000;
        if (lost) { lost = false; handlers.onReload(); }
        const reader = r.body.getReader(), decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, {stream: true});
          for (let end; (end = buffer.indexOf("\n\n")) >= 0; buffer = buffer.slice(end + 2))
            dispatch(buffer.slice(0, end));
        }
      } catch (e) { /* reconnect below */ }
      lost = true;
      status.textContent = "reconnecting…";
      status.className = "down";
      setTimeout(open, wait);
      wait = Math.min(wait * 2, 15000);
    }
    open();
  }

  // A banner whenever the worker cannot process or store data (monitoring degraded).
  function watchHealth() {
    const banner = document.getElementById("degraded");
    async function check() {
      let problems = [];
      try {
        const body = await (await fetch("/ready")).json();
        if (!body.ready) problems = body.problems && body.problems.length ? body.problems : ["the worker is not ready"];
      } catch (e) { problems = ["the monitoring server does not answer"]; }
      banner.hidden = problems.length === 0;
      banner.textContent = problems.length ? "MONITORING DEGRADED — alarms may be delayed or missing: " + problems.join("; ") : "";
    }
    setInterval(check, 5000);
    check();
  }

  async function act(alertId, action, minutes = 30) {
    const r = await api(`/v1/alerts/${alertId}/${action}`, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({minutes}),
    });
    return r.ok ? `${action === "ack" ? "acknowledged" : "snoozed"}; waiting for the worker…` : `${action} failed: ${r.status}`;
  }

  // One open alarm: severity, reason, state (who acted), Acknowledge and Snooze in place.
  function alarmLine(a, status) {
    const div = document.createElement("div");
    div.className = `alarm ${a.severity} state-${a.state}`;
    div.dataset.alertId = a.alert_id;
    div.dataset.shownAt = String(Date.now());
    div.innerHTML = `<span class="sev"></span><span class="reason"></span><span class="muted state"></span>
      <button class="ack">Acknowledge</button><button class="secondary snooze">Snooze 30 min</button>`;
    div.querySelector(".sev").textContent = a.severity;
    div.querySelector(".reason").textContent = a.reason;
    div.querySelector(".state").textContent = a.state === "open" ? "opened " + hhmm(a.opened_at)
      : `${a.state}${a.by ? " by " + a.by : ""}`;
    div.querySelector(".ack").disabled = a.state === "acknowledged";
    div.querySelector(".ack").onclick = async () => status.textContent = await act(a.alert_id, "ack");
    div.querySelector(".snooze").onclick = async () => status.textContent = await act(a.alert_id, "snooze");
    return div;
  }
  function openAlarms(alarms) {  // most severe first, then oldest
    return alarms.filter(a => a.state !== "resolved")
      .sort((x, y) => (SEVERITY[x.severity] - SEVERITY[y.severity]) || x.opened_at.localeCompare(y.opened_at));
  }

  const SEVERITY = {critical: 0, urgent: 1, warning: 2, info: 3};
  const GLUCOSE = {urgent_low: 0, low: 1, urgent_high: 2, high: 3, in_range: 4};
  const VITAL_CODES = {heart_rate: ["8867-4"], respiratory_rate: ["9279-1"], spo2: ["59408-5", "2708-6"],
                       systolic_bp: ["8480-6"], body_temperature: ["8310-5"]};
  // wall-clock time in the browser's zone, as everywhere on the pages
  const clock = seconds => new Date(seconds * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  const hhmm = t => clock(typeof t === "string" ? Date.parse(t) / 1000 : t / 1000);

  // Acuity, most urgent first: open alarm severity, then NEWS2, then glucose state.
  function acuity(row) {
    const open = (row.alarms || []).filter(a => a.state !== "resolved");
    const sev = Math.min(9, ...open.map(a => SEVERITY[a.severity] ?? 9));
    const news2 = row.news2 ? row.news2.score : -1;
    const glucose = row.glucose ? (GLUCOSE[row.glucose.level] ?? 5) : 6;
    return [sev, -news2, glucose];
  }
  function byAcuity(a, b) {
    const x = acuity(a), y = acuity(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
    return a.patient_id.localeCompare(b.patient_id);
  }

  // -- charts ------------------------------------------------------------------------------
  // A time chart: series of [t_ms, value] points, a shaded band (target range), the served
  // forecast as a dashed line, vertical marks (alarms). Keeps only the last `hours` hours.
  class TimeChart {
    constructor(el, {hours, band, label, width, height, min, max, marks}) {
      this.el = el; this.hours = hours; this.band = band; this.points = []; this.forecast = [];
      this.marks = marks || [];
      const chart = this;
      const opts = {
        width, height, legend: {show: false}, cursor: {show: false},
        scales: {x: {time: true}, y: {range: (u, lo, hi) => [Math.min(min, lo ?? min), Math.max(max, hi ?? max)]}},
        axes: [{size: 24, font: "10px system-ui", ticks: {size: 3}, values: (u, ticks) => ticks.map(clock)},
               {size: 34, font: "10px system-ui", ticks: {size: 3}}],
        series: [{}, {label, stroke: "#1d2330", width: 1.5, points: {size: 3}},
                 {label: "forecast", stroke: "#6a4fb3", width: 1.5, dash: [4, 3], points: {size: 4}}],
        hooks: {drawClear: [u => chart.drawBackground(u)]},
      };
      this.plot = new uPlot(opts, [[], [], []], el);
    }
    drawBackground(u) {
      const ctx = u.ctx;
      ctx.save();
      if (this.band) {
        const top = u.valToPos(this.band[1], "y", true), bottom = u.valToPos(this.band[0], "y", true);
        ctx.fillStyle = "rgba(46, 160, 67, 0.12)";
        ctx.fillRect(u.bbox.left, top, u.bbox.width, bottom - top);
      }
      ctx.strokeStyle = "rgba(198, 40, 40, 0.8)";
      ctx.lineWidth = 1;
      for (const t of this.marks) {
        const x = u.valToPos(t / 1000, "x", true);
        if (x >= u.bbox.left && x <= u.bbox.left + u.bbox.width) {
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        }
      }
      ctx.restore();
    }
    set(points) { this.points = points.slice().sort((a, b) => a[0] - b[0]); this.draw(); }
    add(t, v) {
      if (t == null || v == null) return;
      const last = this.points[this.points.length - 1];
      if (last && t <= last[0]) { if (t === last[0]) last[1] = v; else return; }
      else this.points.push([t, v]);
      this.draw();
    }
    mark(t) { if (!this.marks.includes(t)) { this.marks.push(t); this.draw(); } }
    setForecast(pairs) { this.forecast = pairs; this.draw(); }
    draw() {
      const newest = this.points.length ? this.points[this.points.length - 1][0] : Date.now();
      const since = newest - this.hours * 3600e3;
      this.points = this.points.filter(p => p[0] >= since);
      const ahead = this.forecast.length && this.points.length
        ? [[newest, this.points[this.points.length - 1][1]], ...this.forecast.filter(f => f[0] > newest)] : [];
      const xs = [...this.points.map(p => p[0]), ...ahead.slice(1).map(p => p[0])];
      const real = [...this.points.map(p => p[1]), ...ahead.slice(1).map(() => null)];
      const fut = [...this.points.map((p, i) => (ahead.length && i === this.points.length - 1 ? p[1] : null)),
                   ...ahead.slice(1).map(p => p[1])];
      this.plot.setData([xs.map(t => t / 1000), real, fut]);
      this.el.dataset.points = String(this.points.length);
      this.el.classList.toggle("empty", this.points.length === 0);  // no data: no blank chart
    }
  }

  function forecastPairs(row) {
    if (!row.forecast || !row.glucose || row.glucose.at == null) return [];
    return Object.entries(row.forecast.mg_dl).map(([min, v]) => [row.glucose.at + Number(min) * 60e3, v])
      .sort((a, b) => a[0] - b[0]);
  }
  function forecastText(row) {
    if (!row.forecast) return "";
    const f = row.forecast, v = f.mg_dl["30"];
    if (v == null) return "";
    const by = (f.served_by || {})["30"] || "";
    const model = "model " + (f.version || "");
    const source = by === "model" ? model : by === "model+personal" ? model + ", adapted to the patient"
      : by === "ar2" ? "AR2 minimum" : by;
    return `→ ${Math.round(v)} in 30 min (${source})`;
  }

  return {api, me, live, watchHealth, act, byAcuity, TimeChart, forecastPairs, forecastText,
          hhmm, VITAL_CODES, token, signIn, finishSignIn, alarmLine, openAlarms, wardQuery};
})();
