/**
 * `rallyjs/ws`: a drop-in for the `ws` package (its public API, version 8, and the types of
 * `@types/ws`) on Rally's protocol core and server. See docs/ws-compat.md for what differs.
 *
 * ```ts
 * import WebSocket, { WebSocketServer } from 'rallyjs/ws'
 * // CommonJS: const WebSocket = require('rallyjs/ws'); new WebSocket.Server({ port })
 * ```
 *
 * The class carries the rest of the API as ws's export does (`WebSocket.Server`,
 * `WebSocket.WebSocketServer`, `WebSocket.createWebSocketStream`), for a default import and for
 * require(): index.cjs hands out this same class.
 */
export { createWebSocketStream } from './stream.js'
export type {
  AddressInfo,
  CertMeta,
  ClientOptions,
  CloseEvent,
  Data,
  ErrorEvent,
  Event,
  EventListenerOptions,
  MessageEvent,
  PerMessageDeflateOptions,
  RawData,
  SendOptions,
  ServerOptions,
  UpgradeRequest,
  UpgradeResponse,
  VerifyClientCallbackAsync,
  VerifyClientCallbackSync,
  VerifyClientInfo,
  WebSocketEventMap,
} from './types.js'
export { type BinaryType, type ClientWebSocketOptions, WebSocket, WebSocket as default } from './websocket.js'
export {
  WebSocketServer as Server,
  WebSocketServer,
  type WebSocketServerOptions,
} from './websocket-server.js'
