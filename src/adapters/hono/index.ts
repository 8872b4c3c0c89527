/**
 * `rallyjs/hono`: WebSockets for Hono on Node, with Rally underneath.
 *
 * ```ts
 * const app = new Hono()
 * const { upgradeWebSocket, injectWebSocket } = createNodeWebSocket({ app })
 * app.get('/realtime', upgradeWebSocket((c) => ({
 *   onMessage(event, ws) { ws.send(`echo: ${event.data}`) },
 * })))
 * const server = serve({ fetch: app.fetch, port: 3000 }) // @hono/node-server
 * injectWebSocket(server)
 * ```
 *
 * `hono/ws` semantics: WSEvents (onOpen, onMessage, onClose, onError) and one WSContext per
 * connection (not one per event), whose `raw` is Rally's ServerWebSocket — topics, backpressure
 * status, `ws.data`. Middleware runs before the upgrade and may refuse it with any response;
 * headers it sets (cookies) go out with the 101. A plain GET gets 426 Upgrade Required.
 */
import { Buffer } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import type { Http2SecureServer } from 'node:http2'
import type { Duplex } from 'node:stream'
import { defineWebSocketHelper, WSContext, type WSEvents } from 'hono/ws'
import { CloseEvent } from '../../client/events.js'
import { endAndRelease } from '../../node/end-and-release.js'
import { upgradeRequiredConnection } from '../../server/handshake-decision.js'
import { printUnlessRoutine } from '../../server/lifecycle.js'
import { RallyServer } from '../../server/server.js'
import type { ServerWebSocket } from '../../server/server-websocket.js'
import type { ServerErrorKind, ServerOptions, UpgradeContext } from '../../server/types.js'
import type { UpgradeRequest } from '../../server/upgrade-request.js'

/** Anything with Hono's `fetch`: a Hono app, or a function like `app.fetch`. */
export interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>
}

export interface UpgradeWebSocketOptions {
  /** Subprotocols this route speaks; the first one the client offers is chosen. Default: the
   * client's first offer (as the `ws` package does). */
  protocols?: readonly string[]
}

/** Rally server options (limits, deflate, heartbeat, origins...), without the handlers. */
export type NodeWebSocketOptions = Omit<
  ServerOptions<HonoConnection>,
  | 'upgrade'
  | 'open'
  | 'message'
  | 'drain'
  | 'ping'
  | 'pong'
  | 'close'
  | 'port'
  | 'host'
  | 'tls'
  | 'path'
  | 'protocols'
> & { app: FetchApp }

const UPGRADE_SLOT = Symbol('rally.hono.upgrade')
/** Marks the response of an accepted upgrade; never sent to the client. */
const ACCEPT_HEADER = 'x-rally-accept-upgrade'

/** What a route's upgradeWebSocket leaves for the upgrade listener. */
interface UpgradeSlot {
  events?: WSEvents<ServerWebSocket<HonoConnection>>
  options?: UpgradeWebSocketOptions
  url?: string
}

/** One per connection: the route's events and the connection's single WSContext. */
export class HonoConnection {
  readonly events: WSEvents<ServerWebSocket<HonoConnection>>
  readonly options: UpgradeWebSocketOptions
  readonly url: string
  readonly responseHeaders: Headers
  context: WSContext<ServerWebSocket<HonoConnection>> | undefined

  constructor(slot: UpgradeSlot, responseHeaders: Headers) {
    this.events = slot.events ?? {}
    this.options = slot.options ?? {}
    this.url = slot.url ?? 'http://localhost/'
    this.responseHeaders = responseHeaders
  }
}

/**
 * What injectWebSocket needs of a server: its `upgrade` event, and `close` (which closes Rally's
 * connections too). node:http and node:https servers have them, and so does what `serve()` of
 * @hono/node-server returns, typed there as a union with HTTP/2 servers (which see HTTP/1.1
 * upgrades only with `allowHTTP1`). Structural, so that these types do not depend on
 * @hono/node-server's.
 */
export interface UpgradeEventSource {
  on(event: 'upgrade', listener: (request: IncomingMessage, socket: Duplex, head: Buffer) => void): unknown
  on(event: 'close', listener: () => void): unknown
}

export interface NodeWebSocket {
  upgradeWebSocket: ReturnType<
    typeof defineWebSocketHelper<ServerWebSocket<HonoConnection>, UpgradeWebSocketOptions>
  >
  /**
   * Handles upgrade requests of a node:http(s) server (the one `serve()` returns); on a
   * node:http2 server, its WebSocket streams (RFC 8441) too, through the same routes.
   */
  injectWebSocket(server: UpgradeEventSource): void
  /** The Rally server underneath: `publish`, `subscriberCount`, `stats()`, `close()`. */
  rally: RallyServer<HonoConnection>
}

export function createNodeWebSocket(init: NodeWebSocketOptions): NodeWebSocket {
  const { app, ...serverOptions } = init
  const pending = new WeakMap<object, HonoConnection>()

  /** To the `error` option, or printed as the server does when it is absent and not routine. */
  function reportError(
    error: unknown,
    ws: ServerWebSocket<HonoConnection> | undefined,
    kind: ServerErrorKind,
  ) {
    if (serverOptions.error !== undefined) serverOptions.error(error, ws, kind)
    else printUnlessRoutine(error, kind)
  }

  const rally = new RallyServer<HonoConnection>({
    ...serverOptions,
    upgrade(request: UpgradeRequest, context: UpgradeContext) {
      const connection = pending.get(request)
      // Not routed yet: an extended CONNECT on an HTTP/2 stream (RFC 8441), which attachHttp2
      // hands straight to Rally. The app routes it here, as injectWebSocket does an upgrade.
      if (connection === undefined) return routeStream(request, context)
      pending.delete(request)
      return accept(connection, context)
    },
    open(ws) {
      const connection = ws.data
      connection.context = new WSContext({
        send: (data, options) => void ws.send(data, { compress: options?.compress }),
        close: (code, reason) => ws.close(code, reason),
        raw: ws,
        get readyState() {
          return ws.readyState as 0 | 1 | 2 | 3
        },
        url: connection.url,
        protocol: ws.protocol,
      })
      return connection.events.onOpen?.(new Event('open'), connection.context)
    },
    message(ws, data, isBinary) {
      const connection = ws.data
      const payload = isBinary ? toArrayBuffer(data as Buffer) : (data as string)
      return connection.events.onMessage?.(
        new MessageEvent('message', { data: payload }),
        connection.context!,
      )
    },
    close(ws, code, reason, info) {
      const connection = ws.data
      return connection.events.onClose?.(
        new CloseEvent('close', { code, reason, wasClean: info.wasClean }) as unknown as Parameters<
          NonNullable<WSEvents['onClose']>
        >[0],
        connection.context!,
      )
    },
    error(error, ws, kind) {
      const connection = ws?.data
      if (connection?.context !== undefined && connection.events.onError !== undefined) {
        connection.events.onError(new ErrorEventLike(error), connection.context)
      } else {
        reportError(error, ws, kind)
      }
    },
  })

  /** The route's subprotocol choice and the headers middleware set, for the 101 (or the 200). */
  function accept(connection: HonoConnection, context: UpgradeContext): HonoConnection {
    const wanted = connection.options.protocols
    context.protocol =
      wanted === undefined
        ? context.protocols[0]
        : wanted.find((protocol) => context.protocols.includes(protocol))
    connection.responseHeaders.forEach((value, name) => {
      if (!SKIPPED_HEADERS.has(name)) context.headers.append(name, value)
    })
    return connection
  }

  /** Runs the app for a WebSocket stream: its route accepts, or its response is the refusal. */
  async function routeStream(
    request: UpgradeRequest,
    context: UpgradeContext,
  ): Promise<HonoConnection | Response> {
    const slot: UpgradeSlot = {}
    const env = { incoming: request, outgoing: undefined, [UPGRADE_SLOT]: slot }
    const response = await app.fetch(toRequest(request), env)
    if (slot.events === undefined || response.headers.get(ACCEPT_HEADER) !== '1') return response
    return accept(new HonoConnection(slot, response.headers), context)
  }

  const upgradeWebSocket = defineWebSocketHelper<ServerWebSocket<HonoConnection>, UpgradeWebSocketOptions>(
    (c, events, options) => {
      if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
        // A plain request to a WebSocket route: say so (RFC 7231 6.5.15).
        return c.text('This endpoint requires a WebSocket upgrade\n', 426, {
          Upgrade: 'websocket',
          Connection: upgradeRequiredConnection(c.req.header('connection')),
        })
      }
      const slot = (c.env as Record<symbol, UpgradeSlot> | undefined)?.[UPGRADE_SLOT]
      if (slot === undefined) {
        return c.text('WebSocket upgrades need injectWebSocket(server) from rallyjs/hono\n', 500)
      }
      slot.events = events
      slot.options = options
      slot.url = c.req.url
      // c.body keeps the headers middleware set on the context (cookies), for the 101.
      return c.body(null, 200, { [ACCEPT_HEADER]: '1' })
    },
  )

  function injectWebSocket(server: UpgradeEventSource): void {
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Before any await: a reset while the app decides must not crash the process.
      socket.on('error', ignore)
      const slot: UpgradeSlot = {}
      const env = { incoming: request, outgoing: undefined, [UPGRADE_SLOT]: slot }
      Promise.resolve()
        .then(() => app.fetch(toRequest(request), env))
        .then(async (response) => {
          if (socket.destroyed) return
          if (slot.events !== undefined && response.headers.get(ACCEPT_HEADER) === '1') {
            pending.set(request, new HonoConnection(slot, response.headers))
            socket.removeListener('error', ignore)
            rally.handleUpgrade(request, socket, head)
            return
          }
          // Middleware or the route refused: its response goes out as is.
          await writeResponse(socket, response)
        })
        // Anything failing on the way — the app throwing, a refusal whose body stream errors —
        // ends here, never as an unhandled rejection: 500 if nothing was sent yet, otherwise
        // the socket is destroyed (a response cut short must not look complete). Either way it
        // is released.
        .catch((error: unknown) => {
          reportError(error, undefined, 'handshake')
          if (socket.writableEnded || socket.destroyed) socket.destroy()
          else endAndRelease(socket, plainResponse(500, 'Internal Server Error'))
        })
    })
    // An HTTP/2 server (node:http2, allowHTTP1): its WebSocket streams too, through the same
    // routes (the upgrade hook above runs the app for them). Its HTTP/1.1 upgrades stay with
    // the listener above.
    const http2 = server as UpgradeEventSource & Partial<Pick<Http2SecureServer, 'updateSettings'>>
    if (typeof http2.updateSettings === 'function')
      rally.attachHttp2(server as Http2SecureServer, { http1Upgrades: false })
    server.on('close', () => void rally.close())
  }

  return { upgradeWebSocket, injectWebSocket, rally }
}

const SKIPPED_HEADERS = new Set([
  ACCEPT_HEADER,
  'content-length',
  'content-type',
  'connection',
  'upgrade',
  'transfer-encoding',
])

function ignore(): void {}

/**
 * The upgrade request as a web Request for Hono (no body: it is a GET). An extended CONNECT
 * (HTTP/2) is shown as the GET upgrade it stands for (RFC 8441 5), so that `app.get` routes and
 * upgradeWebSocket take it; pseudo-header fields are left out (Headers refuses their names) and
 * `:authority` is the host (RFC 9113 8.3.1).
 */
function toRequest(request: UpgradeRequest): Request {
  const extendedConnect = request.method === 'CONNECT'
  const host = (extendedConnect ? request.headers[':authority'] : request.headers.host) ?? 'localhost'
  const secure = (request.socket as { encrypted?: boolean }).encrypted === true
  const url = new URL(request.url ?? '/', `${secure ? 'https' : 'http'}://${host}`)
  const headers = new Headers()
  for (let i = 0; i < request.rawHeaders.length; i += 2) {
    try {
      headers.append(request.rawHeaders[i]!, request.rawHeaders[i + 1]!)
    } catch {
      // A header value Headers refuses (invalid characters) is left out rather than failing.
    }
  }
  if (!extendedConnect) return new Request(url, { method: request.method, headers })
  headers.set('host', String(host))
  headers.set('upgrade', 'websocket')
  headers.set('connection', 'Upgrade')
  return new Request(url, { method: 'GET', headers })
}

async function writeResponse(socket: Duplex, response: Response): Promise<void> {
  // The body is read whole before anything is written (refusals are small): a body that fails
  // leaves the socket untouched for the 500.
  const body = Buffer.from(await response.arrayBuffer())
  if (socket.destroyed) return
  let head = `HTTP/1.1 ${response.status} ${response.statusText || 'Error'}\r\nConnection: close\r\n`
  response.headers.forEach((value, name) => {
    if (name !== 'content-length' && name !== 'connection' && name !== 'transfer-encoding')
      head += `${name}: ${value}\r\n`
  })
  head += `Content-Length: ${body.length}\r\n\r\n`
  endAndRelease(socket, Buffer.concat([Buffer.from(head, 'latin1'), body]))
}

function plainResponse(status: number, text: string): string {
  return `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}`
}

function toArrayBuffer(data: Buffer): ArrayBuffer {
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer
}

/** hono/ws's onError receives an Event; this one carries the error too. */
class ErrorEventLike extends Event {
  readonly error: unknown
  constructor(error: unknown) {
    super('error')
    this.error = error
  }
}

/** The realtime layer (rally.v1) as a route of a Hono app; see rallyjs/realtime. */
export { mountRealtime } from '../../realtime/hono.js'
/** The realtime layer's SSE and long-polling routes on a Hono app served by @hono/node-server. */
export { mountTransports } from '../../realtime/transports/hono.js'
