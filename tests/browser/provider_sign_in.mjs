// A person opens the ward view, clicks "Sign in with your hospital account", is sent to the
// identity provider and back, and lands on the ward view signed in.
// usage: node provider_sign_in.mjs WARD_URL
// Prints one JSON line: {ok, who, rows, visited, address}; exits 1 when it never gets there.
import { chromium } from "playwright-core";

const [ward] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
const result = { ok: false, visited: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("request", request => {  // every page the tab asked for, redirects included
    if (request.isNavigationRequest() && request.frame() === page.mainFrame())
      result.visited.push(request.url());
  });
  await page.goto(ward);
  await page.locator("#signin button.provider").click({ timeout: 30000 });
  await page.waitForURL(url => url.pathname === "/ui", { timeout: 30000 });
  await page.locator("#who").filter({ hasText: "·" }).waitFor({ timeout: 30000 });
  await page.locator(".row").first().waitFor({ timeout: 30000 });
  result.who = await page.locator("#who").textContent();
  result.rows = (await page.locator(".row").allTextContents()).join("\n");
  result.signinHidden = await page.locator("#signin").isHidden();
  result.address = page.url();
  result.ok = true;
} catch (error) {
  result.error = String(error);
} finally {
  console.log(JSON.stringify(result));
  await browser.close();
  process.exit(result.ok ? 0 : 1);
}
