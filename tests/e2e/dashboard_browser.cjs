// Drives the dashboard in Debian's headless Chromium over the DevTools
// protocol (puppeteer-core from `make browser`) for tests/e2e/dashboard_e2e.rs:
// what the page shows without a token, with a wrong one, with the right one;
// a failover clicked in the page; the live feed; a waiting session's
// question; screenshots at phone and desktop widths. It prints one JSON line
// of what it saw; the Rust test judges it against the daemon's own /status.
// After the failover it prints `question?` and waits for a line on stdin: the
// test has then stopped a session on a permission prompt.
//
// argv[2]: {"url", "token", "failover_to", "out", "profile", "chromium", "puppeteer"}
"use strict";

const args = JSON.parse(process.argv[2]);
const puppeteer = require(args.puppeteer);

const WAIT = { timeout: 60000 };

// The next line on stdin (the test's go-ahead).
function nextLine() {
  return new Promise((resolve) => {
    let got = "";
    const take = (chunk) => {
      got += chunk;
      if (got.includes("\n")) { process.stdin.off("data", take); process.stdin.destroy(); resolve(); }
    };
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", take);
  });
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    userDataDir: args.profile,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
  const seen = { console: [] };
  try {
    const page = await browser.newPage();
    page.on("console", (m) => { if (m.type() === "error") seen.console.push(m.text()); });
    page.on("pageerror", (e) => seen.console.push("pageerror: " + e.message));
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(args.url, { waitUntil: "load" });

    // No token: the prompt and nothing else.
    await page.waitForSelector("#login:not([hidden])", WAIT);
    seen.no_token = await page.evaluate(() => ({
      dash_hidden: document.getElementById("dash").hidden,
      login_shown: !document.getElementById("login").hidden,
      accounts: document.querySelectorAll("[data-account]").length,
      sessions: document.querySelectorAll("[data-session]").length,
      visible_text: document.body.innerText,
    }));

    // A wrong token is refused.
    await page.type("#token", "not-the-token");
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#login-error:not([hidden])", WAIT);
    seen.wrong_token = await page.evaluate(() => ({
      error: document.getElementById("login-error").textContent,
      dash_hidden: document.getElementById("dash").hidden,
    }));

    // The right one opens the dashboard.
    await page.type("#token", args.token);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#dash:not([hidden])", WAIT);
    await page.waitForSelector("[data-session]", WAIT);
    await page.waitForFunction(() => document.querySelector("#events li"), WAIT);
    const read = () => page.evaluate(() => {
      const text = (root, sel) => { const n = root.querySelector(sel); return n ? n.textContent.trim() : null; };
      return {
        active: document.getElementById("active-account").textContent,
        accounts: [...document.querySelectorAll("[data-account]")].map((a) => ({
          name: a.dataset.account, state: text(a, "[data-role=state]"),
          five_hour: text(a, "[data-window='5h'] .value"), weekly: text(a, "[data-window='weekly'] .value"),
          chart_points: (a.querySelector("polyline.use") || { getAttribute: () => "" }).getAttribute("points")
            .split(" ").filter(Boolean).length,
          threshold_line: !!a.querySelector("line.thr"),
          projection_line: !!a.querySelector("line.proj"),
          projection: text(a, "[data-role=projection]"),
        })),
        sessions: [...document.querySelectorAll("[data-session]")].map((s) => ({
          name: s.dataset.session, state: text(s, "[data-role=state]"), account: text(s, "[data-role=account]"),
          task: text(s, "[data-role=task]"), question: text(s, "[data-role=question]"),
          options: [...s.querySelectorAll("[data-role=question] li")].map((o) => o.textContent),
        })),
        queues: [...document.querySelectorAll("#queues tr[data-project]")].map((r) => ({
          project: r.dataset.project,
          ...Object.fromEntries([...r.querySelectorAll("[data-count]")].map((c) => [c.dataset.count, Number(c.textContent)])),
        })),
        failed: [...document.querySelectorAll("#failed [data-task]")].map((t) => ({
          task: t.dataset.task, reason: text(t, "[data-role=reason]"),
        })),
        events: [...document.querySelectorAll("#events li")].map((e) => e.dataset.kind),
        swaps: [...document.querySelectorAll("#swaps tr[data-swap]")].map((r) => text(r, "[data-role=reason]")),
      };
    });
    await page.waitForSelector("#failed [data-task]", WAIT);
    seen.before = await read();
    await page.screenshot({ path: args.out + "/dashboard-desktop.png", fullPage: true });

    // A failover clicked in the page, behind its confirmation; the feed then
    // gains its events without a reload.
    const loads = [];
    page.on("load", () => loads.push(Date.now()));
    await page.select("#failover-to", args.failover_to);
    await page.click("#failover");
    await page.waitForSelector("#confirm[open]", WAIT);
    seen.confirm_text = await page.$eval("#confirm-text", (n) => n.textContent);
    await page.click("#confirm-ok");
    await page.waitForSelector("#events li[data-kind=failover_started]", WAIT);
    await page.waitForSelector("#events li[data-kind=failover_finished]", { timeout: 180000 });
    await page.waitForFunction((to) => document.getElementById("active-account").textContent === to
      && [...document.querySelectorAll("[data-session] [data-role=account]")].every((a) => a.textContent === to),
    { timeout: 180000 }, args.failover_to);
    await page.waitForSelector("#swaps tr[data-swap]", WAIT);
    seen.after = await read();
    seen.reloads = loads.length;

    // A session stopped on a question: the page shows it without a reload.
    process.stdout.write("question?\n");
    await nextLine();
    await page.waitForSelector("[data-session] [data-role=question] li", { timeout: 180000 });
    seen.question = await read();

    // A phone's viewport reloads the page (puppeteer does, for isMobile); the
    // token kept for the tab opens it again.
    await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
    await page.waitForSelector("#dash:not([hidden]) [data-session]", WAIT);
    await page.waitForFunction(() => document.querySelector("#events li") && document.fonts.status === "loaded", WAIT);
    await page.screenshot({ path: args.out + "/dashboard-phone.png", fullPage: false });
    await page.screenshot({ path: args.out + "/dashboard-phone-full.png", fullPage: true });
    seen.token_in_page = (await page.content()).includes(args.token);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
