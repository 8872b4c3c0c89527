/**
 * `rallyjs/ws`: a drop-in for the `ws` package (its public API, version 8, and the types of
 * `@types/ws`) on Rally's protocol core and server. See docs/ws-compat.md for what differs.
 *
 * ```ts
 * import WebSocket, { WebSocketServer } from 'rallyjs/ws'
 * // CommonJS: const WebSocket = require('rallyjs/ws'); new WebSocket.Server({ port })
 * ```
 */
import { createWebSocketStream } from './stream.js'
import { WebSocket } from './websocket.js'
import { WebSocketServer } from './websocket-server.js'

// As ws does on its export: the class carries the rest of the API, so that `WebSocket.Server`,
// `WebSocket.WebSocketServer` and `WebSocket.createWebSocketStream` work from a default import
// and from require() (index.cjs hands out this same class).
WebSocket.Server = WebSocketServer
WebSocket.WebSocketServer = WebSocketServer
WebSocket.WebSocket = WebSocket
WebSocket.createWebSocketStream = createWebSocketStream

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
export type { BinaryType, ClientWebSocketOptions } from './websocket.js'
export type { WebSocketServerOptions } from './websocket-server.js'
export { createWebSocketStream, WebSocket, WebSocket as default, WebSocketServer, WebSocketServer as Server }
