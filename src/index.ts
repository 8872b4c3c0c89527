/**
 * Rally: real-time, full-duplex communication for TypeScript on Node.js.
 *
 * - `createServer` — a WebSocket server with one handler object (port of its own, or attached to
 *   any `node:http(s)` server with `handleUpgrade`).
 * - `WebSocket` — the WHATWG WebSocket client for Node.
 * - The sans-I/O protocol core is exported from `rallyjs/protocol`.
 */
export { CloseEvent, ErrorEvent } from './client/events.js'
export { type BinaryType, WebSocket, type WebSocketOptions } from './client/websocket.js'
export type { PerMessageDeflateOptions } from './protocol/extensions/permessage-deflate.js'
export {
  CloseCode,
  type CloseInfo,
  DEFAULT_LIMITS,
  HandshakeError,
  type Limits,
  ProtocolError,
  ProtocolErrorCode,
  TimeoutError,
} from './protocol/index.js'
export { PreparedMessage } from './pubsub/prepared-message.js'
export { type HttpRequestHandler, RallyHttpRequest, RallyHttpResponse } from './server/own-http.js'
export { createServer, RallyServer } from './server/server.js'
export {
  type SendData,
  type SendOptions,
  type SendStatus,
  ServerWebSocket,
} from './server/server-websocket.js'
export type {
  BackpressureClose,
  BackpressurePolicy,
  ServerErrorKind,
  ServerHandlers,
  ServerOptions,
  ServerStats,
  UpgradeContext,
} from './server/types.js'
export type { UpgradeRequest } from './server/upgrade-request.js'
