// The ward view and a patient page in Debian's headless chromium, under live load.
// usage: node ward_view.mjs URL TOKEN_A USER_A TOKEN_B PATIENT SECONDS OUTDIR
// Two signed-in users (two browsers) keep the ward view open while the cohort streams:
//  - every few seconds, every chart in view must have points (no blank charts);
//  - requests per second are counted after the first 10 s (steady state);
//  - prints READY once both pages are live; the caller then raises an alarm for PATIENT;
//    the time (ms since epoch) that browser A shows it is reported;
//  - A acknowledges it; B must show it acknowledged by USER_A;
//  - screenshots: ward-view.png and patient-page.png (PATIENT's page) in OUTDIR.
// Prints one JSON line with the measurements; exits 1 on a failed check.
import { chromium } from "playwright-core";

const [url, tokenA, userA, tokenB, patient, seconds, outdir] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
const result = { ok: false, blank: [], checks: 0 };
async function open(token) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const requests = [];
  page.on("request", r => requests.push({ t: Date.now(), url: r.url() }));
  page.on("console", m => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", e => problems.push(String(e)));
  await page.goto(`${url}/ui#token=${token}`);
  await page.locator("#status.live").waitFor({ timeout: 30000 });
  return { page, requests };
}
// rows in view whose patient has CGM (its latest reading shown) but whose chart has no points
const blankCharts = page => page.evaluate(() => [...document.querySelectorAll(".row")]
  .filter(row => {
    const r = row.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight;  // in view
  })
  .filter(row => row.querySelector(".glucose .value").textContent.trim() !== "–")
  .filter(row => !(Number(row.querySelector(".chart").dataset.points) > 0))
  .map(row => row.dataset.patient));

try {
  const start = Date.now();
  const a = await open(tokenA);
  const b = await open(tokenB);
  await a.page.locator(".row").first().waitFor({ timeout: 30000 });
  console.log("READY");
  const row = sel => a.page.locator(`.row[data-patient="${patient}"] ${sel}`);
  const until = start + Number(seconds) * 1000;
  let shownAt = null;
  while (Date.now() < until || shownAt === null) {
    if (Date.now() > until + 30000) throw new Error(`no alarm for ${patient} on the page`);
    await a.page.waitForTimeout(2500);
    if (Date.now() - start > 8000) {  // charts of rows in view have loaded their series
      const blank = await blankCharts(a.page);
      result.checks += 1;
      if (blank.length) result.blank.push({ at_s: (Date.now() - start) / 1000, blank });
    }
    if (shownAt === null && await row(".alarm").count()) {
      shownAt = Number(await row(".alarm").first().getAttribute("data-shown-at"));
    }
  }
  result.alarm_shown_at_ms = shownAt;
  const steady = a.requests.filter(r => r.t >= start + 10000 && r.t <= until);
  result.steady_seconds = (until - start - 10000) / 1000;
  result.steady_requests = steady.length;
  result.requests_per_s = steady.length / result.steady_seconds;
  result.request_paths = [...new Set(steady.map(r => new URL(r.url).pathname.replace(/sim-\d+|acc-\w+/, "{id}")))];
  result.rows = await a.page.locator(".row").count();
  await a.page.screenshot({ path: `${outdir}/ward-view.png` });
  // A acknowledges; B sees it, with A's name
  await row(".alarm button.ack").first().click();
  const seenAck = Date.now();
  await b.page.locator(`.row[data-patient="${patient}"] .alarm.state-acknowledged`, { hasText: `by ${userA}` })
    .first().waitFor({ timeout: 15000 });
  result.ack_seen_in_other_browser_ms = Date.now() - seenAck;
  // the patient's page
  await a.page.goto(`${url}/ui/patients/${encodeURIComponent(patient)}`);
  await a.page.locator("#status.live").waitFor({ timeout: 30000 });
  await a.page.locator("#history tr").first().waitFor({ timeout: 15000 });
  await a.page.waitForFunction(() => Number(document.querySelector("#cgm").dataset.points) > 0, null, { timeout: 15000 });
  result.patient_cgm_points = Number(await a.page.locator("#cgm").getAttribute("data-points"));
  result.history_rows = await a.page.locator("#history tr").count();
  await a.page.waitForTimeout(500);
  await a.page.screenshot({ path: `${outdir}/patient-page.png`, fullPage: true });
  result.ok = true;
} catch (error) {
  result.error = String(error);
} finally {
  result.page_errors = problems;
  console.log(JSON.stringify(result));
  await browser.close();
  process.exit(result.ok && !problems.length ? 0 : 1);
}
