/**
 * Server options, handlers and the internal contract between the server and its sockets.
 */

import type { Duplex } from 'node:stream'
import type { TlsOptions } from 'node:tls'
import type { DriverOptions } from '../node/socket-driver.js'
import type { PerMessageDeflateOptions } from '../protocol/extensions/permessage-deflate.js'
import type { CloseInfo, HandshakeError, Limits } from '../protocol/index.js'
import type { TopicRegistry } from '../pubsub/topic-registry.js'
import type { HttpRequestHandler } from './own-http.js'
import type { SendData, SendOptions, ServerWebSocket } from './server-websocket.js'
import type { UpgradeRequest } from './upgrade-request.js'

/** What `upgrade` can do before the 101: read the offer, choose a subprotocol, add headers. */
export interface UpgradeContext {
  /** Subprotocols the client offered, in its order of preference. */
  readonly protocols: readonly string[]
  /** The subprotocol to accept; must be one of `protocols`. Preset from the `protocols` option. */
  protocol: string | undefined
  /** Extra headers for the 101 response (cookies, for instance). */
  readonly headers: Headers
  readonly remoteAddress: string
}

/**
 * What an error passed to the `error` handler is about:
 * - 'protocol': the peer broke RFC 6455 or a limit (a ProtocolError; the connection was failed
 *   with its close code). Routine on the Internet.
 * - 'timeout': a heartbeat went unanswered (a TimeoutError; the socket was terminated). Routine.
 * - 'transport': the socket failed (ECONNRESET, EPIPE...); the cause is also in CloseInfo.error.
 *   Routine.
 * - 'handler': one of the application's handlers threw or rejected (the connection closed
 *   with 1011). A bug to look at.
 * - 'compression': permessage-deflate failed on our side (zlib); the connection closed with 1011.
 * - 'handshake': the server failed while deciding an upgrade (the `upgrade` handler threw, a
 *   refusal Response's body failed); the peer got 500.
 * - 'accept': the listening socket could not accept a connection (EMFILE: out of file
 *   descriptors); the server keeps listening.
 */
export type ServerErrorKind =
  | 'protocol'
  | 'timeout'
  | 'transport'
  | 'handler'
  | 'compression'
  | 'handshake'
  | 'accept'

/** One handler object for every connection (in the spirit of Bun and uWebSockets). */
export interface ServerHandlers<UserData = undefined> {
  /**
   * Runs before the 101 response: authenticate, check the origin, pick a subprotocol. Return the
   * connection's `ws.data`, or a `Response` to refuse the upgrade with its status, headers and
   * body. May be async; a throw refuses with 500.
   */
  upgrade?(
    request: UpgradeRequest,
    context: UpgradeContext,
  ): UserData | Response | Promise<UserData | Response>
  /** The connection is open. If it returns a promise, reading starts once it settles. */
  open?(ws: ServerWebSocket<UserData>): unknown
  /** Text arrives as a string (unless `decodeText` is false), binary as a Buffer. */
  message?(ws: ServerWebSocket<UserData>, data: string | Buffer, isBinary: boolean): unknown
  /** The socket's write buffer emptied after `send` returned 'buffered'. */
  drain?(ws: ServerWebSocket<UserData>): unknown
  ping?(ws: ServerWebSocket<UserData>, data: Buffer): unknown
  pong?(ws: ServerWebSocket<UserData>, data: Buffer): unknown
  /**
   * The connection is closed: `code` from the peer's close frame, or 1005/1006 (RFC 6455 7.1.5).
   * `info` adds what the client's close event has: `wasClean` (close frames went both ways) and
   * `error`, what ended the connection if something went wrong (the peer's ProtocolError, a
   * socket error such as ECONNRESET).
   */
  close?(ws: ServerWebSocket<UserData>, code: number, reason: string, info: CloseInfo): unknown
  /**
   * Errors, with their `kind` (see ServerErrorKind) so that routine peer faults can be logged
   * quietly and the application's own bugs loudly. `ws` is the connection concerned, if any.
   * Without this handler, errors of kinds 'handler', 'compression', 'handshake' and 'accept' are
   * printed to stderr; 'protocol', 'timeout' and 'transport' (the peer's doing) are not.
   */
  error?(error: unknown, ws: ServerWebSocket<UserData> | undefined, kind: ServerErrorKind): unknown
  /**
   * A malformed handshake request (bad key, version, headers...). Return true to answer the
   * socket yourself (rallyjs/ws emits `wsClientError` this way); otherwise Rally answers with the
   * error's status and a one-line reason.
   */
  handshakeError?(error: HandshakeError, request: UpgradeRequest, socket: Duplex): boolean | undefined
}

export interface ServerOptions<UserData = undefined> extends ServerHandlers<UserData> {
  /** Listen on this port (0 for any free port). Without it, attach with `handleUpgrade`. */
  port?: number
  /** Default: Node's default (all interfaces). */
  host?: string
  /** Serve wss:// with these TLS options (key, cert, ...). */
  tls?: TlsOptions
  /** Accept upgrades only on this path (pathname, without the query); others get 404. */
  path?: string
  /**
   * Plain HTTP/1.1 requests on the server's own port (`port`): every request without `Upgrade`,
   * with its body read in full (`request.body`), answered through a ServerResponse-like object.
   * Keep-alive, pipelining, chunked bodies and HEAD are handled (src/server/own-http.ts). Without
   * it such requests get 426 Upgrade Required. Not used when attached to another server, whose
   * own request handling applies.
   */
  request?: HttpRequestHandler
  /** Largest body of a plain HTTP request, in bytes; 413 beyond. Default 1 MiB. */
  maxRequestBodySize?: number
  /**
   * Subprotocols this server speaks, in its order of preference: the first of them that the
   * client offered is chosen (the server's order wins, so it can prefer its newest version).
   */
  protocols?: readonly string[]
  /** Largest message in bytes. Default 16 MiB. Shorthand for `limits.maxMessageSize`. */
  maxPayload?: number
  /** Every protocol limit (frame size, fragments, header size and count). */
  limits?: Partial<Limits>
  /** Bytes a socket may have queued before the `backpressurePolicy` applies. Default 16 MiB. */
  maxBackpressure?: number
  /**
   * What happens to a socket over `maxBackpressure`: 'drop' (default) — further messages are
   * dropped (`send` returns 'dropped') until it catches up; 'close' — the socket is closed with
   * 1008 Policy Violation, for apps where a gap in the stream is worse than a reconnect; or
   * `{ code, reason, lastMessage? }` — closed with that code, after `lastMessage` (a text
   * message saying why, for protocols that explain their closes). One socket can have its own:
   * `ws.backpressurePolicy`.
   */
  backpressurePolicy?: BackpressurePolicy
  /**
   * Stop reading from a socket while this many bytes wait to be written to it, until it drains,
   * so a peer that sends without reading cannot make the server buffer its replies. Also stops
   * reading while `maxPendingHandlers` async `message` handlers are unsettled. Default 1 MiB.
   */
  readPauseThreshold?: number
  /** Async `message` handlers in flight per socket before reading pauses. Default 64. */
  maxPendingHandlers?: number
  /**
   * Pings every `interval` ms and terminates a socket that has not answered (nor sent anything)
   * within `timeout` ms — the close handler gets 1006. Default { interval: 30000, timeout: 10000 };
   * false turns it off.
   */
  heartbeat?: { interval: number; timeout: number } | false
  /** Close sockets that receive nothing for this many ms (1001). Default 0: off. */
  idleTimeout?: number
  /**
   * Time for the whole handshake, from the first request byte to the 101 — a client that
   * sends half a request and stalls (slowloris) or an `upgrade` handler that never settles is
   * dropped (408 / 503). Default 10000 ms.
   */
  handshakeTimeout?: number
  /**
   * Origins allowed to connect, against cross-site WebSocket hijacking: exact origins
   * ("https://app.example"), patterns with one "*" label ("https://*.example"), or RegExps.
   * Others get 403. Requests without an Origin header (non-browser clients) are allowed.
   * Default: any origin.
   */
  allowedOrigins?: readonly (string | RegExp)[]
  /** Most open connections; more get 503. Default 0: no limit (the OS's file limit applies). */
  maxConnections?: number
  /** Most open connections from one IP address; more get 429. Default 0: no limit. */
  maxConnectionsPerIp?: number
  /** How long the closing handshake may take before the socket is destroyed (ms). Default 5000. */
  closeTimeout?: number
  /** Deliver text messages as strings (default) or as Buffers. */
  decodeText?: boolean
  /** Answer pings automatically (RFC 6455 5.5.2). Default true. */
  autoPong?: boolean
  /**
   * permessage-deflate (RFC 7692). Default false. `true` takes the defaults of
   * PerMessageDeflateOptions: no context takeover either way, so compression costs no memory
   * between messages and a broadcast is compressed once.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
}

/** See `ServerOptions.backpressurePolicy`. */
export type BackpressurePolicy = 'drop' | 'close' | BackpressureClose

/** Close a socket that went over `maxBackpressure` with this code, after one last text message. */
export interface BackpressureClose {
  /** The close code (4000–4999 for an application's own, RFC 6455 7.4.2). */
  readonly code: number
  /** The close reason (at most 123 bytes of UTF-8). */
  readonly reason: string
  /** Sent just before the close frame, past the limit: the one message that may exceed it. */
  readonly lastMessage?: string
}

/** Counters a user can read without a metrics library: `server.stats()`. */
export interface ServerStats {
  connections: number
  connectionsTotal: number
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  /** Refused handshakes by HTTP status. */
  handshakeRejections: Record<string, number>
  protocolErrors: number
  backpressureDrops: number
  /** Sockets closed by the backpressure policy 'close'. */
  backpressureCloses: number
  heartbeatTimeouts: number
  idleTimeouts: number
  /**
   * Open connections by transport: `http1` WebSockets on their own HTTP/1.1 socket, `http2`
   * WebSockets on an HTTP/2 stream (RFC 8441), and `http2Sessions` the HTTP/2 connections
   * carrying them — three sockets sharing one connection read `{ http2: 3, http2Sessions: 1 }`.
   */
  transports: { http1: number; http2: number; http2Sessions: number }
}

/** What a ServerWebSocket needs from its server. */
export interface ServerContext<UserData> {
  readonly handlers: ServerHandlers<UserData>
  readonly driverOptions: DriverOptions
  readonly maxBackpressure: number
  readonly backpressurePolicy: BackpressurePolicy
  readonly readPauseThreshold: number
  readonly maxPendingHandlers: number
  readonly decodeText: boolean
  readonly counters: ServerStats
  readonly topicRegistry: TopicRegistry<ServerWebSocket<UserData>>
  publish(topic: string, data: SendData, options?: SendOptions, exclude?: ServerWebSocket<UserData>): number
  connectionClosed(ws: ServerWebSocket<UserData>): void
  reportError(error: unknown, kind: ServerErrorKind, ws?: ServerWebSocket<UserData>): void
}
