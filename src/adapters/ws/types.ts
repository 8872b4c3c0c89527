/**
 * The types of `rallyjs/ws`, named and shaped as `@types/ws` (version 8) names them, so that a
 * program written against `ws` + `@types/ws` compiles with only its import changed. Options that
 * Rally does not implement are typed (they compile) and documented in docs/ws-compat.md; the
 * constructors throw a clear TypeError when one of them asks for behaviour Rally lacks.
 */
import type { Buffer } from 'node:buffer'
import type { ClientRequestArgs, Server as HttpServer, IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { ConnectionOptions as TlsConnectOptions } from 'node:tls'
import type { ZlibOptions } from 'node:zlib'
import type { WebSocket } from './websocket.js'

/** A received message: a Buffer, an ArrayBuffer or Buffer[] depending on `binaryType`. */
export type RawData = Buffer | ArrayBuffer | Buffer[]

/** A message payload as the WHATWG-style `onmessage` sees it (text arrives as a string). */
export type Data = string | RawData

/** Certificate and key material, as in TLS options. */
export type CertMeta = string | string[] | Buffer | Buffer[]

/**
 * What `send` accepts: strings and numbers as text; bytes, arrays of byte values and lists of
 * buffers (a received `RawData` with binaryType 'fragments', joined) as binary.
 */
export type SendableData =
  | string
  | number
  | ArrayBufferLike
  | ArrayBufferView
  | readonly number[]
  | readonly Uint8Array[]
  | { valueOf(): ArrayBuffer }
  | { valueOf(): Uint8Array }
  | { valueOf(): string }

export interface SendOptions {
  /** Accepted for compatibility: a client always masks (RFC 6455 5.3), a server never does. */
  mask?: boolean | undefined
  /** Send as binary. Default: true for bytes, false for strings. */
  binary?: boolean | undefined
  /** With permessage-deflate: compress this message or not. */
  compress?: boolean | undefined
  /** false: this is a fragment of a message that later calls continue (RFC 6455 5.4). */
  fin?: boolean | undefined
}

/** What `verifyClient` is given. */
export interface VerifyClientInfo<Request extends IncomingMessage = IncomingMessage> {
  /** The Origin header ("" when absent would be more honest; ws passes it as it is). */
  origin: string
  /** Whether the connection is TLS. */
  secure: boolean
  req: Request
}

export type VerifyClientCallbackSync<Request extends IncomingMessage = IncomingMessage> = (
  info: VerifyClientInfo<Request>,
) => boolean

export type VerifyClientCallbackAsync<Request extends IncomingMessage = IncomingMessage> = (
  info: VerifyClientInfo<Request>,
  callback: (result: boolean, code?: number, message?: string, headers?: OutgoingHttpHeaders) => void,
) => void

/** ws's permessage-deflate options (RFC 7692), with Rally's `level` and `memLevel` shortcuts. */
export interface PerMessageDeflateOptions {
  serverNoContextTakeover?: boolean | undefined
  clientNoContextTakeover?: boolean | undefined
  serverMaxWindowBits?: number | undefined
  clientMaxWindowBits?: number | undefined
  /** Only `level` and `memLevel` are used; the window comes from the negotiated parameters. */
  zlibDeflateOptions?:
    | {
        flush?: number | undefined
        finishFlush?: number | undefined
        chunkSize?: number | undefined
        windowBits?: number | undefined
        level?: number | undefined
        memLevel?: number | undefined
        strategy?: number | undefined
        dictionary?: Buffer | Buffer[] | DataView | undefined
        info?: boolean | undefined
      }
    | undefined
  /** Accepted for compatibility; Rally's inflater sizes its own window and output limit. */
  zlibInflateOptions?: ZlibOptions | undefined
  /** Messages shorter than this many bytes are sent uncompressed. Default 1024. */
  threshold?: number | undefined
  /** Accepted for compatibility: Rally bounds zlib work process-wide. */
  concurrencyLimit?: number | undefined
  /** zlib level, 0-9 (Rally's name for zlibDeflateOptions.level). */
  level?: number | undefined
  /** zlib memLevel, 1-9 (Rally's name for zlibDeflateOptions.memLevel). */
  memLevel?: number | undefined
}

/**
 * Client options, as ws takes them: TLS options at the top level, plus the WebSocket ones.
 * `followRedirects`, `agent`, `createConnection` and `finishRequest` are typed but throw.
 */
export interface ClientOptions extends Omit<TlsConnectOptions, 'timeout' | 'host' | 'port' | 'path'> {
  protocol?: string | undefined
  /** Not supported (browsers do not follow redirects for WebSockets either): true throws. */
  followRedirects?: boolean | undefined
  maxRedirects?: number | undefined
  /** Accepted for compatibility; masks come from Rally's pooled crypto source. */
  generateMask?(mask: Buffer): void
  handshakeTimeout?: number | undefined
  perMessageDeflate?: boolean | PerMessageDeflateOptions | undefined
  localAddress?: string | undefined
  /** Only 13 exists (RFC 6455); anything else throws. */
  protocolVersion?: number | undefined
  headers?: { [key: string]: string } | undefined
  /** Sets the Origin header. */
  origin?: string | undefined
  /** Not supported: setting it throws. */
  agent?: unknown
  host?: string | undefined
  family?: number | undefined
  rejectUnauthorized?: boolean | undefined
  /** Accepted for compatibility; Rally emits events synchronously. */
  allowSynchronousEvents?: boolean | undefined
  autoPong?: boolean | undefined
  /** Default 100 MiB, as in ws (Rally's native default is 16 MiB). */
  maxPayload?: number | undefined
  maxBufferedChunks?: number | undefined
  maxFragments?: number | undefined
  /** Accepted and ignored: RFC 6455 8.1 makes UTF-8 validation a MUST. */
  skipUTF8Validation?: boolean | undefined
  /** Not supported: setting it throws. */
  createConnection?: unknown
  /** Not supported: setting it throws. */
  finishRequest?: unknown
}

/**
 * Client options as the constructor takes them: ws's, or node:http request options (of which the
 * headers, timeout and TLS fields are used; `agent` and `createConnection` throw).
 */
export type ClientConstructorOptions = ClientOptions | ClientRequestArgs

/** Server options, as ws names them, plus Rally's backpressure policy (opt-in). */
export interface ServerOptions<
  T extends typeof WebSocket = typeof WebSocket,
  U extends typeof IncomingMessage = typeof IncomingMessage,
> {
  host?: string | undefined
  port?: number | undefined
  backlog?: number | undefined
  server?: HttpServer<U> | HttpsServer<U> | undefined
  verifyClient?:
    | VerifyClientCallbackAsync<InstanceType<U>>
    | VerifyClientCallbackSync<InstanceType<U>>
    | undefined
  handleProtocols?: (protocols: Set<string>, request: InstanceType<U>) => string | false
  /** Accept upgrades only on this path. */
  path?: string | undefined
  noServer?: boolean | undefined
  /** Accepted for compatibility; Rally emits events synchronously. */
  allowSynchronousEvents?: boolean | undefined
  autoPong?: boolean | undefined
  /** Keep `clients`. Default true. */
  clientTracking?: boolean | undefined
  /** Default false on the server, as in ws. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions | undefined
  /** Default 100 MiB, as in ws (Rally's native default is 16 MiB). */
  maxPayload?: number | undefined
  maxBufferedChunks?: number | undefined
  /** At most this many frames per message. Default 4096 (Rally's limit; ws has none). */
  maxFragments?: number | undefined
  /** Accepted and ignored: RFC 6455 8.1 makes UTF-8 validation a MUST. */
  skipUTF8Validation?: boolean | undefined
  /** The class of server-side sockets: a subclass of this package's WebSocket. */
  WebSocket?: T | undefined
  /**
   * Rally extension. Like ws, rallyjs/ws never drops a message: a slow peer's messages queue
   * (see `bufferedAmount`) without limit unless this is set — then a send over it is dropped (its
   * callback gets an error) or, with `backpressurePolicy: 'close'`, the socket is closed with 1008.
   */
  maxBackpressure?: number | undefined
  /** Rally extension: what happens over `maxBackpressure`. Default 'drop'. */
  backpressurePolicy?: 'drop' | 'close' | undefined
}

export interface AddressInfo {
  address: string
  family: string
  port: number
}

/**
 * What the `upgrade` and `unexpected-response` events carry, as in ws: an `http.IncomingMessage`
 * with the response's status line and headers (its body is not read: it ends at once).
 */
export type UpgradeResponse = IncomingMessage

/** What `unexpected-response` carries as the request. */
export interface UpgradeRequest {
  method: string
  url: string
}

/** The WHATWG-style events of ws's `addEventListener` and `on*` attributes. */
export interface Event {
  type: string
  target: WebSocket
}

export interface ErrorEvent extends Event {
  // biome-ignore lint/suspicious/noExplicitAny: @types/ws types it so; user code assigns it freely.
  error: any
  message: string
}

export interface CloseEvent extends Event {
  wasClean: boolean
  code: number
  reason: string
}

export interface MessageEvent extends Event {
  data: Data
}

export interface WebSocketEventMap {
  open: Event
  error: ErrorEvent
  close: CloseEvent
  message: MessageEvent
}

export interface EventListenerOptions {
  once?: boolean | undefined
}
