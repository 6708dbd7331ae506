// Drives the built-in /analytics page in a real headless Chromium (playwright-core).
// Usage: node browser.mjs <base url> <username> <password> <screenshot.png> <expect: charts|denied>
// Prints one JSON line with what the page showed.
import { createRequire } from "node:module";

const [base, username, password, shot, expect] = process.argv.slice(2);
const require = createRequire(process.env.PLAYWRIGHT_CORE_DIR + "/");
const { chromium } = require("playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/analytics");
  await page.waitForSelector("#login:not([hidden])", { timeout: 20000 });
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForNavigation(), page.click("#login-form button")]);
  const result = { errors };
  if (expect === "denied") {
    await page.waitForSelector("body[data-denied='1']", { timeout: 20000 });
    result.denied = await page.isVisible("#denied");
    result.charts = await page.isVisible("#page");
  } else {
    await page.waitForSelector("body[data-loaded='1']", { timeout: 30000 });
    result.series = await page.$$eval("#activity path[data-series]", (ps) =>
      ps.map((p) => ({ name: p.dataset.series, points: p.getAttribute("d").split(/[ML]/).filter(Boolean).length })));
    result.bars = await page.$$eval("#scopes rect.bar", (rs) => rs.length);
    result.working = await page.$$eval("#working tbody tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
    result.exceptions = await page.$$eval("#exceptions tbody tr", (rs) => rs.map((r) => r.cells[4].textContent));
    result.status = await page.textContent("#status");
    // a filter: only the job with working time
    await page.fill("input[name=job_id]", "11");
    await page.click("#filters button");
    await page.waitForFunction(() => document.querySelector("#status").textContent.includes("events"));
    await page.waitForTimeout(300);
    result.filtered = await page.$$eval("#working tbody tr", (rs) => rs.length);
    await page.fill("input[name=job_id]", "");
    await page.click("#filters button");
    await page.waitForTimeout(800);
    await page.screenshot({ path: shot, fullPage: true });
  }
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
