// Node `ws` room server (peer): rooms from the handshake query
// (`?roomId=r`), each message parsed, labelled with `__alephaRoom` and
// sent to every other member of the sender's room in a loop, as Alepha's
// Node provider does (encode once, send loop over the room's members).
// With `deflate`, permessage-deflate as ws does it: compressed per socket,
// each socket keeping its context, messages from 64 bytes.
// Usage: node rooms.js HOST:PORT [deflate]
'use strict';
const { WebSocketServer } = require('ws');
const [host, port] = (process.argv[2] || '127.0.0.1:9001').split(':');
const perMessageDeflate = process.argv[3] === 'deflate' ? { threshold: 64 } : false;
const rooms = new Map(); // room id -> Set of sockets
const wss = new WebSocketServer({ host, port: Number(port), perMessageDeflate, maxPayload: 1 << 20 });
wss.on('connection', (ws, req) => {
  req.socket.setNoDelay(true);
  const url = new URL(req.url, 'http://x');
  const room = url.searchParams.get('roomId') || 'default';
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  ws.on('message', (data) => {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    const frame = JSON.stringify({ ...message, __alephaRoom: room });
    for (const other of members) {
      if (other !== ws && other.readyState === 1) other.send(frame);
    }
  });
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0) rooms.delete(room);
  });
});
wss.on('listening', () => console.log(`listening on ${host}:${port}`));
