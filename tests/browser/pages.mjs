// The browser side of the demo chat's browser tests: Debian's Chromium
// driven by playwright-core, one browser context per user, the page's own
// form to join, send and read. Shared by chat.test.mjs (one node) and
// cluster.test.mjs (two nodes behind one Redis).

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Every wait for something to appear is guarded by this.
export const WAIT_MS = 10_000;

let browser;
/** The users opened so far, by name. */
/** @type {Record<string, {page: import('playwright-core').Page, errors: string[], room: string}>} */
export const users = {};

/** A line of `#log` whose text contains `text`. */
export const line = (page, text) => page.locator('#log li', { hasText: text });

/** Every line of `#log`, as text, for failure messages. */
export const logOf = async (page) => (await page.locator('#log li').allInnerTexts()).join(' | ') || '(empty)';

export async function waitForLine(name, text, kind) {
  const { page } = users[name];
  const selector = kind ? `#log li.${kind}` : '#log li';
  try {
    await page.locator(selector, { hasText: text }).first().waitFor({ state: 'visible', timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`${name}: no ${kind || ''} line with ${JSON.stringify(text)} within ${WAIT_MS} ms; log: ${await logOf(page)}`, { cause: e });
  }
}

export async function announce(url, room, body) {
  const res = await fetch(new URL(`rooms/${encodeURIComponent(room)}/announce`, url), {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body,
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(res.status, 200, `POST /rooms/${room}/announce answered ${res.status}`);
  return (await res.text()).trim();
}

export async function send(name, text) {
  const { page } = users[name];
  await page.fill('#message', text);
  await page.click('#send');
  // The page shows the sender's own line itself (the server replies except-self).
  await waitForLine(name, text, 'mine');
  assert.equal(await page.inputValue('#message'), '', `${name}: the message box was not cleared after sending`);
}

export async function openAndJoin(url, name, room) {
  const context = await browser.newContext({ viewport: { width: 900, height: 720 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // A failed load is logged as a console error too; it is checked below with its URL.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    // The page has no icon: the browser's own GET /favicon.ico gets a 404, which is fine.
    if (r.status() >= 400 && new URL(r.url()).pathname !== '/favicon.ico') errors.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  users[name] = { page, errors, room };

  const res = await page.goto(url, { waitUntil: 'load' });
  assert.equal(res?.status(), 200, `${name}: GET / answered ${res?.status()}`);
  assert.equal(await page.title(), 'roomwire chat');
  assert.equal(await page.isDisabled('#message'), true, `${name}: the message box is enabled before joining`);

  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.selectOption('#endpoint', '/ws/chat');
  await page.click('#connect');
  try {
    await page.waitForFunction(
      (want) => document.getElementById('status').textContent === want,
      `connected to ${room} as ${name}`,
      { timeout: WAIT_MS },
    );
  } catch (e) {
    throw new Error(`${name}: did not connect to ${room}; status: ${await page.textContent('#status')}`, { cause: e });
  }
  assert.equal(await page.isEnabled('#message'), true, `${name}: the message box is still disabled after joining`);
}

/** Start the browser (a fresh temporary profile, deleted on close). */
export async function launch() {
  // launch() gives the browser a fresh temporary profile (user data dir) of
  // its own and deletes it on close; it refuses a --user-data-dir argument.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
      '--disable-quic',
    ],
  });
}

export async function close() {
  await browser?.close();
}

/** Join the counter room `room` on `name`'s page, through the page's form. */
export async function joinCounter(name, room) {
  const { page } = users[name];
  await page.fill('#counter-room', room);
  await page.click('#counter-join');
  await page.locator('#inc-1:enabled').waitFor({ timeout: WAIT_MS });
}

/** `first` joins the counter room `room` (a count of 0 with 1 member), then
 * `second` (both pages then show 0 with 2 members). */
export async function joinCounterTogether(first, second, room) {
  await joinCounter(first, room);
  await waitForCount(first, 0, 1);
  await joinCounter(second, room);
  await waitForCount(second, 0, 2);
  await waitForCount(first, 0, 2);
}

/** Wait until `name`'s page shows the counter at `value` with `members` members. */
export async function waitForCount(name, value, members) {
  const { page } = users[name];
  const want = [String(value), `${members} member${members === 1 ? '' : 's'}`];
  try {
    await page.waitForFunction(
      ([v, m]) => document.getElementById('counter-value').textContent === v && document.getElementById('counter-members').textContent === m,
      want,
      { timeout: WAIT_MS },
    );
  } catch (e) {
    const shown = `${await page.textContent('#counter-value')} / ${await page.textContent('#counter-members')} / ${await page.textContent('#counter-status')}`;
    throw new Error(`${name}: the counter never showed ${want.join(' / ')}; it shows ${shown}`, { cause: e });
  }
}

/** POST /rooms/{room}/counter/reset; the value the counter had. */
export async function resetCounter(url, room) {
  const res = await fetch(new URL(`rooms/${encodeURIComponent(room)}/counter/reset`, url), {
    method: 'POST',
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(res.status, 200, `POST /rooms/${room}/counter/reset answered ${res.status}`);
  return Number((await res.text()).trim());
}
