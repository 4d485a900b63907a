// Real-browser test of the demo chat as two nodes behind one Redis
// (adapter-tokio/examples/chat with --redis): alice's page is served by
// node 1, bob's and carol's by node 2. alice and bob join room A, carol room
// B. A message alice types must reach bob once and never carol; an
// announcement POSTed to node 2 for room A must reach alice on node 1 too.
//
// Run through scripts/browser-test.sh, which starts redis-server and the two
// nodes and sets CHAT_URL_1, CHAT_URL_2 and REDIS_PORT.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { announce, close, joinCounterTogether, launch, line, logOf, openAndJoin, resetCounter, send, users, waitForCount, waitForLine } from './pages.mjs';

const NODE_1 = process.env.CHAT_URL_1;
const NODE_2 = process.env.CHAT_URL_2;
const REDIS_PORT = process.env.REDIS_PORT;
const RUN = `${process.pid}-${Date.now().toString(36)}`;
const ROOM_A = `alpha-${RUN}`;
const ROOM_B = `bravo-${RUN}`;
const HERE_AND_THERE = (n) => `delivered to ${n} connection(s) on this node, and published to the others`;

before(async () => {
  assert.ok(NODE_1 && NODE_2 && REDIS_PORT, 'set CHAT_URL_1, CHAT_URL_2 (two chat nodes) and REDIS_PORT (their Redis); scripts/browser-test.sh does');
  await launch();
  await openAndJoin(NODE_1, 'alice', ROOM_A);
  await openAndJoin(NODE_2, 'bob', ROOM_A);
  await openAndJoin(NODE_2, 'carol', ROOM_B);
});

after(close);

const HELLO = `hello across nodes ${RUN}`;

test('a message typed on node 1 (alice, room A) appears once on node 2 (bob, room A)', async () => {
  // Both nodes hear room A once their subscriptions reach Redis (a node
  // subscribes when the room gets its first member there): wait for Redis
  // to count two subscribers of the room's channel.
  const channel = `rw:8:/ws/chat:r:${ROOM_A}`;
  const subscribers = () => execFileSync('redis-cli', ['-p', REDIS_PORT, 'pubsub', 'numsub', channel]).toString().trim().split('\n')[1];
  for (let waited = 0; subscribers() !== '2'; waited += 20) {
    assert.ok(waited < 10_000, `${channel} has ${subscribers()} subscribers, not 2`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await send('alice', HELLO);
  await waitForLine('bob', HELLO, 'append');
  const got = line(users.bob.page, HELLO);
  assert.equal(await got.count(), 1, 'bob got the message more than once');
  assert.equal(await got.locator('.who').textContent(), 'alice:');
  assert.equal(await got.getAttribute('data-room'), ROOM_A);
});

test('carol (room B, node 2) never sees it', async () => {
  const marker = `marker for room B ${RUN}`;
  // From node 1, where nobody is in room B: it reaches carol through Redis.
  assert.equal(await announce(NODE_1, ROOM_B, marker), HERE_AND_THERE(0));
  await waitForLine('carol', marker, 'system');
  assert.equal(await line(users.carol.page, HELLO).count(), 0, `carol saw room A's message; log: ${await logOf(users.carol.page)}`);
});

test('an announcement to node 2 reaches room A on both nodes', async () => {
  const news = `announced on node 2 ${RUN}`;
  assert.equal(await announce(NODE_2, ROOM_A, news), HERE_AND_THERE(1));
  await waitForLine('alice', news, 'system');
  await waitForLine('bob', news, 'system');
  for (const name of ['alice', 'bob']) {
    assert.equal(await line(users[name].page, news).count(), 1, `${name} got the announcement more than once`);
  }
  assert.equal(await line(users.alice.page, HELLO).count(), 1, 'alice saw only her own line of her message');
  for (const [name, { errors }] of Object.entries(users)) {
    assert.deepEqual(errors, [], `${name}: errors on the page`);
  }
});

test('alice (node 1) and bob (node 2) share one counter; a reset on node 2 answers it', async () => {
  const room = `counter-${RUN}`;
  await joinCounterTogether('alice', 'bob', room);
  await users.alice.page.click('#inc-10');
  await users.bob.page.click('#inc-1');
  await users.bob.page.click('#inc-1');
  await waitForCount('alice', 12, 2);
  await waitForCount('bob', 12, 2);
  // One owner: the claim in Redis names one node.
  const owner = execFileSync('redis-cli', ['-p', REDIS_PORT, 'get', `rw:11:/ws/counter:owner:${room}`]).toString().trim();
  assert.match(owner, /^[0-9a-f]{8}$/, `the room's owner claim: ${JSON.stringify(owner)}`);
  assert.equal(await resetCounter(NODE_2, room), 12);
  await waitForCount('alice', 0, 2);
  await waitForCount('bob', 0, 2);
  for (const [name, { errors }] of Object.entries(users)) {
    assert.deepEqual(errors, [], `${name}: errors on the page`);
  }
});
