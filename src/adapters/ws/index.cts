/**
 * The CommonJS entry of `rallyjs/ws` (the `require` condition): like ws, `require` returns the
 * WebSocket class itself, carrying `Server`, `WebSocketServer`, `WebSocket` and
 * `createWebSocketStream`, so `const WebSocket = require('rallyjs/ws'); new WebSocket(url);
 * new WebSocket.Server({ port })` works. It loads the ES module build with require(), which Node
 * supports without flags from 20.19 (the `engines` field says so).
 */
import rally = require('./index.js')

// An alias keeps every meaning of the name: the class, its instance type and its namespace of
// types (`WebSocket.RawData`, `WebSocket.ServerOptions`...), as @types/ws declares them.
import WebSocket = rally.WebSocket

export = WebSocket
