/**
 * `rallyjs/ws`: a drop-in for the `ws` package (its public API, version 8) on Rally's protocol
 * core and server. See docs/ws-compat.md for what differs.
 */
export { createWebSocketStream } from './stream.js'
export {
  type BinaryType,
  type ClientWebSocketOptions,
  WebSocket,
  WebSocket as default,
} from './websocket.js'
export { type VerifyClientInfo, WebSocketServer, type WebSocketServerOptions } from './websocket-server.js'
