// A chat channel served the way Alepha's Node `$websocket` provider serves
// one, on Node's `ws` with its default options (in particular no
// `handleProtocols`, so `ws` answers with the first subprotocol a client
// offers), for roomwire's client tests:
//
// * upgrade on the exact channel path, any other path destroys the socket;
// * rooms from the query: every `roomId`, then `roomIds` split at commas,
//   trimmed, empty items dropped; none means the room "default";
// * client frames `{roomId, message}` (or a bare payload); a `roomId` the
//   connection did not join at the handshake falls back to its first room;
//   non-JSON frames are dropped; a payload without a string `content` gets
//   `{"error": "Message validation failed: ..."}`;
// * the handler replies `{type: "append", content, username}` to the room,
//   except the sender, each frame labelled with `__alephaRoom`.
//
// With REDIS_URL set, it is one node of an Alepha cluster, as Alepha's
// Redis topic provider makes it: every reply (and every `POST /emit` with
// a JSON body of Alepha's emit options and `message`) is published on
// `topic:websocket:broadcast` as `JSON.stringify({ payload })`, payload
// `{channelPath, roomIds?, userIds?, connectionIds?, exceptConnectionIds?,
// exceptUserIds?, message}`; every node, this one included, delivers what
// it hears to its own matching connections (Alepha's
// `sendToLocalConnections`). Connection ids are then `ws-<uuid>`, and
// `?user=NAME` gives a connection a user id.
//
// Usage: node server.js HOST:PORT [PATH]   (port 0 picks one)
// Prints "listening on PORT" once it accepts connections.
'use strict';
const http = require('http');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const TOPIC = 'topic:websocket:broadcast';
const REDIS_URL = process.env.REDIS_URL;
let publisher = null;

const [host, port] = (process.argv[2] || '127.0.0.1:0').split(':');
const path = process.argv[3] || '/ws/chat';
const rooms = new Map(); // room id -> Set of connections
const connections = new Set();
let nextId = 1;

// Alepha's sendToLocalConnections: the union of the rooms', users' and
// connections' targets (none named: every connection of the channel),
// minus the excluded connections and users; a frame is labelled with the
// first named room its connection is in.
function sendToLocalConnections(payload) {
  const { roomIds = [], userIds = [], connectionIds = [], exceptConnectionIds = [], exceptUserIds = [], message } = payload;
  const named = roomIds.length + userIds.length + connectionIds.length > 0;
  for (const conn of connections) {
    if (exceptConnectionIds.includes(conn.id) || (conn.userId && exceptUserIds.includes(conn.userId))) continue;
    const room = roomIds.find((r) => conn.roomIds.includes(r));
    const reached = !named || room !== undefined || (conn.userId && userIds.includes(conn.userId)) || connectionIds.includes(conn.id);
    if (!reached || conn.ws.readyState !== 1) continue;
    conn.ws.send(JSON.stringify(room === undefined ? message : { ...message, __alephaRoom: room }));
  }
}

// Alepha's emit with a topic provider: publish, and deliver on hearing it.
async function emit(options) {
  await publisher.publish(TOPIC, JSON.stringify({ payload: { channelPath: path, ...options } }));
}

function extractRoomIds(url) {
  const ids = url.searchParams.getAll('roomId').filter((id) => id.length > 0);
  const list = url.searchParams.get('roomIds');
  if (list) {
    for (const id of list.split(',')) {
      const trimmed = id.trim();
      if (trimmed) ids.push(trimmed);
    }
  }
  return ids.length > 0 ? ids : ['default'];
}

function sendToRoom(roomId, message, exceptConnection) {
  const frame = JSON.stringify({ ...message, __alephaRoom: roomId });
  for (const conn of rooms.get(roomId) || []) {
    if (conn !== exceptConnection && conn.ws.readyState === 1) conn.ws.send(frame);
  }
}

const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
const server = http.createServer((req, res) => {
  if (publisher && req.method === 'POST' && req.url === '/emit') {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', async () => {
      try {
        await emit(JSON.parse(body));
        res.writeHead(200);
        res.end('published\n');
      } catch (e) {
        res.writeHead(400);
        res.end(String(e) + '\n');
      }
    });
    return;
  }
  res.writeHead(404);
  res.end();
});
server.on('upgrade', (request, socket, head) => {
  const url = new URL(request.url, 'http://' + (request.headers.host || 'localhost'));
  if (url.pathname !== path) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    const id = publisher ? 'ws-' + crypto.randomUUID() : 'ws-' + nextId++;
    const conn = { id, ws, roomIds: extractRoomIds(url), userId: url.searchParams.get('user') || undefined };
    connections.add(conn);
    for (const roomId of conn.roomIds) {
      if (!rooms.has(roomId)) rooms.set(roomId, new Set());
      rooms.get(roomId).add(conn);
    }
    console.log(`open ${conn.id} rooms=${conn.roomIds.join(',')} protocol=${ws.protocol}`);
    ws.on('message', (data) => {
      let parsed;
      try {
        parsed = JSON.parse(data.toString());
      } catch {
        return;
      }
      const message = parsed.message || parsed;
      const defaultRoomId = conn.roomIds[0] || 'default';
      let roomId = defaultRoomId;
      if (parsed.roomId && parsed.roomId !== defaultRoomId && conn.roomIds.includes(parsed.roomId)) {
        roomId = parsed.roomId;
      }
      if (typeof message !== 'object' || message === null || typeof message.content !== 'string') {
        ws.send(JSON.stringify({ error: 'Message validation failed: content must be a string' }));
        return;
      }
      const append = { type: 'append', content: message.content, username: conn.userId || conn.id };
      if (publisher) {
        emit({ roomIds: [roomId], exceptConnectionIds: [conn.id], message: append }).catch((e) => console.error(e));
      } else {
        sendToRoom(roomId, append, conn);
      }
    });
    ws.on('close', () => {
      connections.delete(conn);
      for (const roomId of conn.roomIds) {
        const members = rooms.get(roomId);
        if (!members) continue;
        members.delete(conn);
        if (members.size === 0) rooms.delete(roomId);
      }
    });
  });
});
async function start() {
  if (REDIS_URL) {
    const { createClient } = require('redis');
    publisher = createClient({ url: REDIS_URL });
    const subscriber = publisher.duplicate();
    await publisher.connect();
    await subscriber.connect();
    await subscriber.subscribe(TOPIC, (raw) => {
      let payload;
      try {
        payload = JSON.parse(raw).payload;
      } catch {
        return;
      }
      if (payload && payload.channelPath === path) sendToLocalConnections(payload);
    });
  }
  server.listen(Number(port), host, () => console.log(`listening on ${server.address().port}`));
}
start().catch((e) => {
  console.error(e);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
