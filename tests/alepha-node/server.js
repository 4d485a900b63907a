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
// Usage: node server.js HOST:PORT [PATH]   (port 0 picks one)
// Prints "listening on PORT" once it accepts connections.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const [host, port] = (process.argv[2] || '127.0.0.1:0').split(':');
const path = process.argv[3] || '/ws/chat';
const rooms = new Map(); // room id -> Set of connections
let nextId = 1;

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
    const conn = { id: 'ws-' + nextId++, ws, roomIds: extractRoomIds(url) };
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
      sendToRoom(roomId, { type: 'append', content: message.content, username: conn.id }, conn);
    });
    ws.on('close', () => {
      for (const roomId of conn.roomIds) {
        const members = rooms.get(roomId);
        if (!members) continue;
        members.delete(conn);
        if (members.size === 0) rooms.delete(roomId);
      }
    });
  });
});
server.listen(Number(port), host, () => console.log(`listening on ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
