// Real-browser test of the demo chat page (adapter-tokio/examples/chat).
//
// Debian's Chromium, driven by playwright-core, opens the page three times in
// three separate browser contexts (three independent users): alice and bob
// join room A, carol joins room B, all through the page's own form. A message
// typed by alice must reach bob and must not reach carol; an announcement
// POSTed to room A must show up as a system line for alice and bob.
//
// Run through scripts/browser-test.sh, which installs Chromium and
// playwright-core, starts the chat example and sets CHAT_URL. By hand:
//   CHAT_URL=http://127.0.0.1:8080/ node --test tests/browser/chat.test.mjs
// Optional: CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR (default
// .work/browser under the repo root).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const CHAT_URL = process.env.CHAT_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.join(REPO, '.work', 'browser');
// Every wait for something to appear is guarded by this.
const WAIT_MS = 10_000;

// Unique per run, so a stray page from another run could never match.
const RUN = `${process.pid}-${Date.now().toString(36)}`;
const ROOM_A = `alpha-${RUN}`;
const ROOM_B = `bravo-${RUN}`;

let browser;
/** @type {Record<string, {page: import('playwright-core').Page, errors: string[], room: string}>} */
const users = {};

/** A line of `#log` whose text contains `text`. */
const line = (page, text) => page.locator('#log li', { hasText: text });

/** Every line of `#log`, as text, for failure messages. */
const logOf = async (page) => (await page.locator('#log li').allInnerTexts()).join(' | ') || '(empty)';

async function waitForLine(name, text, kind) {
  const { page } = users[name];
  const selector = kind ? `#log li.${kind}` : '#log li';
  try {
    await page.locator(selector, { hasText: text }).first().waitFor({ state: 'visible', timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`${name}: no ${kind || ''} line with ${JSON.stringify(text)} within ${WAIT_MS} ms; log: ${await logOf(page)}`, { cause: e });
  }
}

async function announce(room, body) {
  const res = await fetch(new URL(`rooms/${encodeURIComponent(room)}/announce`, CHAT_URL), {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body,
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(res.status, 200, `POST /rooms/${room}/announce answered ${res.status}`);
  return (await res.text()).trim();
}

async function send(name, text) {
  const { page } = users[name];
  await page.fill('#message', text);
  await page.click('#send');
  // The page shows the sender's own line itself (the server replies except-self).
  await waitForLine(name, text, 'mine');
  assert.equal(await page.inputValue('#message'), '', `${name}: the message box was not cleared after sending`);
}

async function openAndJoin(name, room) {
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

  const res = await page.goto(CHAT_URL, { waitUntil: 'load' });
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

before(async () => {
  assert.ok(CHAT_URL, 'set CHAT_URL to the chat example, e.g. http://127.0.0.1:8080/ (scripts/browser-test.sh does)');
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
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
  // One after the other: the three pages are three separate contexts (no
  // shared cookies or storage), like three different people.
  await openAndJoin('alice', ROOM_A);
  await openAndJoin('bob', ROOM_A);
  await openAndJoin('carol', ROOM_B);
});

after(async () => {
  await browser?.close();
});

const HELLO = `hello from alice ${RUN}`;

test('a message typed in page 1 (alice, room A) appears in page 2 (bob, room A)', async () => {
  await send('alice', HELLO);
  await waitForLine('bob', HELLO, 'append');
  const got = line(users.bob.page, HELLO);
  assert.equal(await got.count(), 1, 'bob got the message more than once');
  assert.equal(await got.locator('.who').textContent(), 'alice:');
  assert.equal(await got.locator('.text').textContent(), HELLO);
  assert.equal(await got.getAttribute('data-room'), ROOM_A, 'the reply is labelled with room A');
});

test('the same message does not appear in page 3 (carol, room B)', async () => {
  // Marker: an announcement to room B, sent after bob already has alice's
  // message. It proves carol's delivery path is live, and since one
  // connection's frames arrive in order, anything wrongly sent to carol
  // before it would be on her page by the time it shows.
  const marker = `marker for room B ${RUN}`;
  assert.equal(await announce(ROOM_B, marker), 'delivered to 1 connection(s)');
  await waitForLine('carol', marker, 'system');
  assert.equal(await line(users.carol.page, HELLO).count(), 0, `carol (room B) saw room A's message; log: ${await logOf(users.carol.page)}`);
  assert.equal(await users.carol.page.locator('#log li').count(), 1, `carol's log has more than the marker: ${await logOf(users.carol.page)}`);
});

test('POST /rooms/A/announce shows up as a system message in pages 1 and 2 only', async () => {
  const news = `maintenance at noon ${RUN}`;
  assert.equal(await announce(ROOM_A, news), 'delivered to 2 connection(s)');
  await waitForLine('alice', news, 'system');
  await waitForLine('bob', news, 'system');
  // The reply to alice's message went to everyone in room A except her:
  // had it reached her too, it would be on her page before this
  // announcement (one connection's frames arrive in order).
  const echoed = users.alice.page.locator('#log li.append', { hasText: HELLO });
  assert.equal(await echoed.count(), 0, `alice received her own message; log: ${await logOf(users.alice.page)}`);
  for (const name of ['alice', 'bob']) {
    const got = users[name].page.locator('#log li.system', { hasText: news });
    assert.equal(await got.locator('.text').textContent(), news);
    assert.equal(await got.getAttribute('data-room'), ROOM_A);
  }
  // And not in room B: a second marker to room B, then look.
  const marker = `second marker for room B ${RUN}`;
  assert.equal(await announce(ROOM_B, marker), 'delivered to 1 connection(s)');
  await waitForLine('carol', marker, 'system');
  assert.equal(await line(users.carol.page, news).count(), 0, `carol (room B) saw room A's announcement; log: ${await logOf(users.carol.page)}`);
});

test('an announcement over 4 KiB is refused with 413 and reaches nobody', async () => {
  const big = `too long ${RUN} ` + 'x'.repeat(8 * 1024);
  const res = await fetch(new URL(`rooms/${encodeURIComponent(ROOM_A)}/announce`, CHAT_URL), {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: big,
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(res.status, 413);
  const marker = `after the refused announcement ${RUN}`;
  assert.equal(await announce(ROOM_A, marker), 'delivered to 2 connection(s)');
  await waitForLine('alice', marker, 'system');
  assert.equal(await line(users.alice.page, `too long ${RUN}`).count(), 0);
});

test('page 2 screenshot, and no page errors', async () => {
  const file = path.join(SCREENSHOT_DIR, 'page2.png');
  await users.bob.page.screenshot({ path: file, fullPage: true });
  console.log(`# screenshot: ${path.relative(process.cwd(), file) || file}`);
  for (const [name, { errors }] of Object.entries(users)) {
    assert.deepEqual(errors, [], `${name}: errors on the page`);
  }
});
