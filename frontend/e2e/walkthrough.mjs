// Drives the dashboard in headless Chromium through the gateway, as an admin
// would: sign in, read the overview and the at-risk list, create a campaign,
// dry-run and preview it, have a second admin approve it, launch it, watch its
// messages reach Delivered, stop every campaign, finish the run and sign out.
//
// Settings come from the environment:
//   RETAIN_GATEWAY_URL        the gateway that serves the dashboard
//   RETAIN_ADMIN_EMAIL, RETAIN_ADMIN_PASSWORD        the campaign's creator
//   RETAIN_APPROVER_EMAIL, RETAIN_APPROVER_PASSWORD  the second admin
//   RETAIN_CHROMIUM           the Chromium binary (default /usr/bin/chromium)
//   RETAIN_SCREENSHOT_DIR     where each page's screenshot goes (optional)
//   RETAIN_RESULTS_CAMPAIGN   a campaign whose ROI page to capture (optional)
//   RETAIN_WALKTHROUGH_RESULT where to write the outcome as JSON (optional)
// A failed step saves failure.png in RETAIN_SCREENSHOT_DIR and exits with 1.

import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";

const STEP_TIMEOUT_MS = 15_000;
const DELIVERY_TIMEOUT_MS = 180_000;
const VIEWPORT = { width: 1280, height: 900 };
// Message states that are not final, as the messages page labels them.
const OPEN_STATES = ["Pending", "Deferred", "Sending", "Submitted"];

const settings = readSettings(process.env);
const outcome = { steps: [], campaignId: null, delivered: 0, stopNotice: "" };

function readSettings(env) {
  const required = [
    "RETAIN_GATEWAY_URL",
    "RETAIN_ADMIN_EMAIL",
    "RETAIN_ADMIN_PASSWORD",
    "RETAIN_APPROVER_EMAIL",
    "RETAIN_APPROVER_PASSWORD",
  ];
  const missing = required.filter((name) => !env[name]);
  if (missing.length > 0) {
    console.error(`Set ${missing.join(", ")} to run the walkthrough.`);
    process.exit(2);
  }
  return {
    gateway: env.RETAIN_GATEWAY_URL.replace(/\/$/, ""),
    admin: {
      email: env.RETAIN_ADMIN_EMAIL,
      password: env.RETAIN_ADMIN_PASSWORD,
    },
    approver: {
      email: env.RETAIN_APPROVER_EMAIL,
      password: env.RETAIN_APPROVER_PASSWORD,
    },
    chromium: env.RETAIN_CHROMIUM || "/usr/bin/chromium",
    screenshotDir: env.RETAIN_SCREENSHOT_DIR || null,
    resultsCampaign: env.RETAIN_RESULTS_CAMPAIGN || null,
    resultPath: env.RETAIN_WALKTHROUGH_RESULT || null,
  };
}

async function step(name, action) {
  const started = Date.now();
  console.log(`step: ${name}`);
  await action();
  outcome.steps.push(name);
  console.log(`  done in ${Date.now() - started} ms`);
}

async function capture(page, name) {
  if (settings.screenshotDir === null) {
    return;
  }
  await page.waitForLoadState("networkidle");
  // A pointer left over a chart would draw its tooltip into the picture.
  await page.mouse.move(0, 0);
  // Charts animate their first drawing; the picture waits for the last frame.
  await page.waitForTimeout(800);
  const file = path.join(settings.screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`  saved ${file}`);
}

/** Waits until no "Loading …" notice is left on the page. */
async function settled(page) {
  await page
    .getByRole("status")
    .filter({ hasText: /^Loading/ })
    .first()
    .waitFor({ state: "detached" });
}

/** Fails with the page's own error text when it shows one. */
async function noErrors(page) {
  const alerts = page.getByRole("alert");
  if ((await alerts.count()) > 0) {
    const texts = await alerts.allTextContents();
    throw new Error(`The page shows an error: ${texts.join(" | ")}`);
  }
}

async function signIn(page, account) {
  await page.goto(`${settings.gateway}/sign-in`);
  await page.getByLabel("Email", { exact: true }).fill(account.email);
  await page.getByLabel("Password", { exact: true }).fill(account.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  await page.getByText(account.email).first().waitFor();
}

async function readCount(row) {
  const text = await row.locator("td").first().textContent();
  return Number((text ?? "").replace(/[^0-9]/g, ""));
}

async function stateCount(page, label) {
  const row = page
    .locator("table.counts tr")
    .filter({ has: page.getByRole("rowheader", { name: label, exact: true }) });
  return (await row.count()) === 0 ? 0 : readCount(row.first());
}

async function badge(page) {
  return (await page.locator("h1 .badge").textContent())?.trim() ?? "";
}

// The walk moves by links, the way an admin clicks.

/** Opens a campaign's page from the campaign list. */
async function openCampaign(
  page,
  campaignId,
  link = `/campaigns/${campaignId}`,
) {
  await page.getByRole("link", { name: "Campaigns", exact: true }).click();
  await page.getByRole("heading", { name: "Campaigns", exact: true }).waitFor();
  await settled(page);
  await page.locator(`a[href="${link}"]`).first().click();
  await settled(page);
}

/** Opens the messages page until `ready` returns true or the time runs out. */
async function pollMessages(page, campaignId, ready, description) {
  const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline) {
    await openCampaign(page, campaignId, `/campaigns/${campaignId}/messages`);
    await page
      .getByRole("heading", { name: /^Messages of campaign/ })
      .waitFor();
    await settled(page);
    await noErrors(page);
    const counts = { delivered: await stateCount(page, "Delivered"), open: 0 };
    for (const label of OPEN_STATES) {
      counts.open += await stateCount(page, label);
    }
    last = JSON.stringify(counts);
    if (ready(counts)) {
      return counts;
    }
    await page.waitForTimeout(1000);
  }
  throw new Error(`Timed out waiting for ${description}; last counts ${last}`);
}

async function walk(browser) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);

  await step("a signed-out visitor is sent to sign in", async () => {
    await page.goto(`${settings.gateway}/`);
    await page.waitForURL(/\/sign-in$/);
    await capture(page, "sign-in");
  });

  await step("a wrong password shows the server's message", async () => {
    await page.getByLabel("Email", { exact: true }).fill(settings.admin.email);
    await page.getByLabel("Password", { exact: true }).fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
  });

  await step("the admin signs in", () => signIn(page, settings.admin));

  await step("a reload keeps the admin signed in", async () => {
    await page.reload();
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    await page.getByText(settings.admin.email).first().waitFor();
  });

  await step("the overview shows customers, risk and events", async () => {
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    await settled(page);
    await noErrors(page);
    const customers = page.locator(".card", { hasText: "Customers" }).first();
    const text = (await customers.textContent()) ?? "";
    if (!/[1-9]/.test(text)) {
      throw new Error(`The overview counts no customers: ${text}`);
    }
    await page.getByRole("heading", { name: "Risk distribution" }).waitFor();
    await page.locator(".recharts-surface").first().waitFor();
    await capture(page, "overview");
  });

  await step("the at-risk list shows masked phones and reasons", async () => {
    await page.getByRole("link", { name: "At-risk customers" }).click();
    await page.getByRole("heading", { name: "At-risk customers" }).waitFor();
    await settled(page);
    await noErrors(page);
    const firstRow = page.locator("tbody tr").first();
    const cells = await firstRow.locator("td").allTextContents();
    if (!cells.some((cell) => /\*{3}/.test(cell))) {
      throw new Error(`No masked phone number in ${JSON.stringify(cells)}`);
    }
    if (cells.some((cell) => /\+2547\d{8}/.test(cell))) {
      throw new Error(`A full phone number is shown: ${JSON.stringify(cells)}`);
    }
    await capture(page, "at-risk");
  });

  await step("the admin creates a campaign", async () => {
    await page.getByRole("link", { name: "Campaigns", exact: true }).click();
    await page.getByRole("heading", { name: "Campaigns" }).waitFor();
    await settled(page);
    await capture(page, "campaigns");
    await page.getByRole("link", { name: "New campaign" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Browser walkthrough");
    await page
      .getByLabel("Churn probability threshold", { exact: true })
      .fill("0.3");
    await page.getByLabel("Holdout share", { exact: true }).fill("0.1");
    await page.getByLabel("Budget (KES)", { exact: true }).fill("2000");
    await page.getByLabel("Brand name", { exact: true }).fill("Retain");
    await capture(page, "new-campaign");
    await page.getByRole("button", { name: "Create campaign" }).click();
    await page.waitForURL(/\/campaigns\/\d+$/);
    outcome.campaignId = page.url().split("/").pop();
    await page.getByRole("heading", { name: /Browser walkthrough/ }).waitFor();
    if ((await badge(page)) !== "Draft") {
      throw new Error(`A new campaign is ${await badge(page)}, not Draft`);
    }
  });

  await step(
    "a dry run counts recipients and cost without sending",
    async () => {
      await page.getByRole("button", { name: "Dry run" }).click();
      await page.getByText("Estimated cost:").waitFor();
      await noErrors(page);
      const dryRun = page.locator("section", {
        has: page.getByRole("heading", { name: "Dry run" }),
      });
      const treated = await readCount(
        dryRun.locator("tr", { hasText: "Treated" }),
      );
      if (treated === 0) {
        throw new Error("The dry run would message nobody");
      }
      outcome.dryRunTreated = treated;
      await page.getByRole("button", { name: "Preview messages" }).click();
      await page.locator("td.message-text").first().waitFor();
      await capture(page, "campaign");
    },
  );

  await step("the creator submits but cannot approve", async () => {
    await page.getByRole("button", { name: "Submit for approval" }).click();
    await page.getByRole("button", { name: "Approve" }).waitFor();
    if (!(await page.getByRole("button", { name: "Approve" }).isDisabled())) {
      throw new Error("The creator may approve their own campaign");
    }
  });

  await step("a second admin approves", async () => {
    const other = await browser.newContext({ viewport: VIEWPORT });
    const approverPage = await other.newPage();
    approverPage.setDefaultTimeout(STEP_TIMEOUT_MS);
    await signIn(approverPage, settings.approver);
    await openCampaign(approverPage, outcome.campaignId);
    await approverPage.getByRole("button", { name: "Approve" }).click();
    await approverPage.getByRole("button", { name: "Launch" }).waitFor();
    await other.close();
  });

  await step("the creator launches it", async () => {
    await openCampaign(page, outcome.campaignId);
    await page.getByRole("button", { name: "Launch" }).click();
    await page
      .locator("h1 .badge")
      .filter({ hasNotText: "Approved" })
      .waitFor();
    await noErrors(page);
    const status = await badge(page);
    if (status !== "Running" && status !== "Finished") {
      throw new Error(`After launch the campaign is ${status}`);
    }
  });

  await step("its messages reach Delivered", async () => {
    await pollMessages(
      page,
      outcome.campaignId,
      (counts) => counts.delivered > 0,
      "a delivered message",
    );
  });

  await step("the admin stops every campaign", async () => {
    await page.getByRole("link", { name: "Campaigns", exact: true }).click();
    await page.getByRole("button", { name: "Stop all campaigns" }).click();
    await page
      .getByLabel("Reason for stopping", { exact: true })
      .fill("browser walkthrough");
    await page.getByRole("button", { name: "Yes, stop all campaigns" }).click();
    const notice = page.getByRole("status").filter({ hasText: /^Paused/ });
    await notice.waitFor();
    outcome.stopNotice = (await notice.textContent()) ?? "";
    await openCampaign(page, outcome.campaignId);
    await page.locator("h1 .badge").waitFor();
    outcome.statusAfterStop = await badge(page);
    if (!["Paused", "Finished"].includes(outcome.statusAfterStop)) {
      throw new Error(`After the stop it is ${outcome.statusAfterStop}`);
    }
  });

  await step("lifting the stop and resuming delivers the rest", async () => {
    await page.getByRole("link", { name: "Campaigns", exact: true }).click();
    await page.getByRole("button", { name: "Lift global stop" }).click();
    await page
      .getByRole("status")
      .filter({ hasText: /allowed again/ })
      .waitFor();
    await openCampaign(page, outcome.campaignId);
    await page.locator("h1 .badge").waitFor();
    if ((await badge(page)) === "Paused") {
      await page.getByRole("button", { name: "Resume" }).click();
      await page
        .locator("h1 .badge")
        .filter({ hasNotText: "Paused" })
        .waitFor();
    }
    const counts = await pollMessages(
      page,
      outcome.campaignId,
      (seen) => seen.delivered > 0 && seen.open === 0,
      "every message to reach a final state",
    );
    outcome.delivered = counts.delivered;
    await capture(page, "messages");
  });

  if (settings.resultsCampaign !== null) {
    await step("the ROI page shows treated against control", async () => {
      const id = settings.resultsCampaign;
      await openCampaign(page, id, `/campaigns/${id}/results`);
      await page
        .getByRole("heading", { name: /^Return on campaign/ })
        .waitFor();
      await settled(page);
      await noErrors(page);
      await capture(page, "roi");
    });
  }

  await step("the admin signs out", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(/\/sign-in$/);
    await page.goto(`${settings.gateway}/campaigns`);
    await page.waitForURL(/\/sign-in$/);
  });
  return page;
}

async function main() {
  if (settings.screenshotDir !== null) {
    await mkdir(settings.screenshotDir, { recursive: true });
  }
  const browser = await chromium.launch({
    executablePath: settings.chromium,
    // Chromium refuses to start its sandbox as root.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
  let failed = false;
  try {
    await walk(browser);
  } catch (error) {
    failed = true;
    console.error(`FAILED: ${error instanceof Error ? error.message : error}`);
    for (const context of browser.contexts()) {
      for (const open of context.pages()) {
        console.error(`  page ${open.url()}`);
        if (settings.screenshotDir !== null) {
          await open.screenshot({
            path: path.join(settings.screenshotDir, "failure.png"),
            fullPage: true,
          });
        }
      }
    }
  } finally {
    await browser.close();
  }
  if (settings.resultPath !== null) {
    await writeFile(settings.resultPath, JSON.stringify(outcome, null, 2));
  }
  process.exit(failed ? 1 : 0);
}

await main();
