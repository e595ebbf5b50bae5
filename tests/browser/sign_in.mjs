// Opens a sign-in link (/ui#token=...) as a person would and waits for the live ward view
// with at least one chart drawn from data. usage: node sign_in.mjs LINK SCREENSHOT.png
// Prints one JSON line: {ok, rows, who, points}; exits 1 when the page never gets there.
import { chromium } from "playwright-core";

const [link, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
const result = { ok: false };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(link);
  await page.locator("#status.live").waitFor({ timeout: 30000 });
  await page.waitForFunction(
    () => [...document.querySelectorAll(".row .chart")].some(c => Number(c.dataset.points) >= 3),
    null, { timeout: 60000 });
  result.rows = await page.locator(".row").count();
  result.who = await page.locator("#who").textContent();
  result.address = page.url();
  await page.screenshot({ path: shot });
  result.ok = true;
} catch (error) {
  result.error = String(error);
} finally {
  console.log(JSON.stringify(result));
  await browser.close();
  process.exit(result.ok ? 0 : 1);
}
