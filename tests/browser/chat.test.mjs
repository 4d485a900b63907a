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
import { WAIT_MS, announce as announceTo, close, joinCounter, joinCounterTogether, launch, line, logOf, openAndJoin as openAt, resetCounter, send, users, waitForCount, waitForLine } from './pages.mjs';

const CHAT_URL = process.env.CHAT_URL;
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.join(REPO, '.work', 'browser');

// Unique per run, so a stray page from another run could never match.
const RUN = `${process.pid}-${Date.now().toString(36)}`;
const ROOM_A = `alpha-${RUN}`;
const ROOM_B = `bravo-${RUN}`;

const announce = (room, body) => announceTo(CHAT_URL, room, body);
const openAndJoin = (name, room) => openAt(CHAT_URL, name, room);

before(async () => {
  assert.ok(CHAT_URL, 'set CHAT_URL to the chat example, e.g. http://127.0.0.1:8080/ (scripts/browser-test.sh does)');
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await launch();
  // One after the other: the three pages are three separate contexts (no
  // shared cookies or storage), like three different people.
  await openAndJoin('alice', ROOM_A);
  await openAndJoin('bob', ROOM_A);
  await openAndJoin('carol', ROOM_B);
});

after(close);

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

test('the counter room: pages share one counter, reset answers its value, and an emptied room starts at 0', async () => {
  const room = `counter-${RUN}`;
  await joinCounterTogether('alice', 'bob', room);
  await users.alice.page.click('#inc-10');
  await users.bob.page.click('#inc-1');
  await waitForCount('alice', 11, 2);
  await waitForCount('bob', 11, 2);
  assert.equal(await resetCounter(CHAT_URL, room), 11);
  await waitForCount('bob', 0, 2);
  await users.bob.page.click('#inc-1');
  await waitForCount('alice', 1, 2);
  // Both leave (joining another room): the state is discarded.
  await joinCounter('alice', `${room}-other`);
  await joinCounter('bob', `${room}-other`);
  await waitForCount('bob', 0, 2);
  await joinCounter('alice', room);
  await waitForCount('alice', 0, 1);
});

test('page 2 screenshot, and no page errors', async () => {
  const file = path.join(SCREENSHOT_DIR, 'page2.png');
  await users.bob.page.screenshot({ path: file, fullPage: true });
  console.log(`# screenshot: ${path.relative(process.cwd(), file) || file}`);
  for (const [name, { errors }] of Object.entries(users)) {
    assert.deepEqual(errors, [], `${name}: errors on the page`);
  }
});
