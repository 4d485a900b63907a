// Node `ws` echo server (peer): every message sent back as it came.
// Usage: node echo.js HOST:PORT
'use strict';
const { WebSocketServer } = require('ws');
const [host, port] = (process.argv[2] || '127.0.0.1:9001').split(':');
const wss = new WebSocketServer({ host, port: Number(port), perMessageDeflate: false, maxPayload: 1 << 20 });
wss.on('connection', (ws, req) => {
  req.socket.setNoDelay(true);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log(`listening on ${host}:${port}`));
