// Opens the care-team page in Debian's headless chromium, waits for the alert of a patient,
// acknowledges it and waits until the page shows it acknowledged. Writes a screenshot.
// usage: node care_team_page.mjs URL PATIENT_ID SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, patient, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  const problems = [];
  page.on("console", m => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", e => problems.push(String(e)));
  process.on("exit", () => { if (problems.length) console.error("page errors:", problems); });
  await page.goto(url);
  const card = page.locator(".alert", { has: page.locator(".patient", { hasText: patient }) }).first();
  try {
    await card.waitFor({ timeout: 30000 });
  } catch (error) {
    console.error("status:", await page.locator("#status").textContent(), "errors:", problems);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-failed.png") });
    throw error;
  }
  const before = await card.locator(".reason").textContent();
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-open.png") });
  await card.locator("button.ack").click();
  await page.locator(".alert.state-acknowledged", { has: page.locator(".patient", { hasText: patient }) })
    .first().waitFor({ timeout: 30000 });
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ ok: true, reason: before, status: await page.locator("#status").textContent() }));
} finally {
  await browser.close();
}
