/**
 * `rallyjs/ws`'s WebSocketServer: the public API of the `ws` package's server, over Rally's
 * server. Libraries that take a `ws` server — @hono/node-server v2, graphql-ws, y-websocket —
 * run on Rally unchanged. Differences from ws are listed in docs/ws-compat.md.
 */
import type { Buffer } from 'node:buffer'
import { EventEmitter } from 'node:events'
import { createServer as createHttpServer, type Server as HttpServer, type IncomingMessage } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { endAndRelease } from '../../node/end-and-release.js'
import { RallyServer } from '../../server/server.js'
import type { ServerWebSocket } from '../../server/server-websocket.js'
import type { UpgradeContext } from '../../server/types.js'
import type * as types from './types.js'
import { toNativeDeflate, WebSocket, WS_DEFAULT_MAX_PAYLOAD } from './websocket.js'

export type VerifyClientInfo = types.VerifyClientInfo

/** @deprecated Use `ServerOptions` (the name @types/ws uses). */
export type WebSocketServerOptions = types.ServerOptions

type VerifyClientCallback = Parameters<types.VerifyClientCallbackAsync>[1]

type UpgradeCallback = (ws: WebSocket, request: IncomingMessage) => void

/** Per-handshake state carried from handleUpgrade to the connection's `open`. */
interface Pending {
  request: IncomingMessage
  callback: UpgradeCallback
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the merged interface adds only event overloads to EventEmitter's own methods (types, no members to initialise).
export class WebSocketServer<
  T extends typeof WebSocket = typeof WebSocket,
  U extends typeof IncomingMessage = typeof IncomingMessage,
> extends EventEmitter {
  readonly options: types.ServerOptions<T, U>
  /**
   * Open connections, when `clientTracking` is on (the default). Typed as a Set as @types/ws types
   * it; with `clientTracking: false` it is undefined, as in ws.
   */
  clients: Set<InstanceType<T>>
  private readonly rally: RallyServer<Pending | WebSocket>
  private readonly httpServer: HttpServer | HttpsServer | undefined
  private readonly ownsServer: boolean
  private readonly detach: (() => void) | undefined
  private state: 'running' | 'closing' | 'closed' = 'running'

  constructor(options: types.ServerOptions<T, U> = {}, callback?: () => void) {
    super()
    const modes = [
      options.port !== undefined,
      options.server !== undefined,
      options.noServer === true,
    ].filter(Boolean)
    if (modes.length !== 1) {
      throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified')
    }
    this.options = { clientTracking: true, ...options }
    this.clients = (this.options.clientTracking ? new Set() : undefined) as Set<InstanceType<T>>
    const deflate = options.perMessageDeflate
    this.rally = new RallyServer<Pending | WebSocket>({
      maxPayload: options.maxPayload ?? WS_DEFAULT_MAX_PAYLOAD,
      ...(options.maxFragments !== undefined ? { limits: { maxFragments: options.maxFragments } } : {}),
      perMessageDeflate:
        deflate === true
          ? // ws's server defaults: context takeover both ways unless the client asks otherwise.
            { serverNoContextTakeover: false, clientNoContextTakeover: false }
          : toNativeDeflate(deflate),
      autoPong: options.autoPong ?? true,
      decodeText: false,
      // ws never drops a message: a slow peer's messages queue, visible in bufferedAmount. Rally's
      // drop-or-close policy applies only when the application asks for it.
      maxBackpressure: options.maxBackpressure ?? Number.POSITIVE_INFINITY,
      backpressurePolicy: options.backpressurePolicy ?? 'drop',
      // ws has no heartbeat of its own (apps ping); keep Rally's off for the same behaviour.
      heartbeat: false,
      // rallyjs/ws only ever hands node:http requests to the native server (its own http server or
      // handleUpgrade's caller's), so the request is an IncomingMessage.
      upgrade: (request, context) => this.negotiate(request as IncomingMessage, context),
      // As in ws: a malformed handshake goes to 'wsClientError' listeners, who answer it.
      handshakeError: (error, request, socket) => {
        if (this.listenerCount('wsClientError') === 0) return false
        this.emit('wsClientError', error, socket, request as IncomingMessage)
        return true
      },
      open: (ws) => this.opened(ws),
      message: (ws, data, isBinary) => (ws.data as WebSocket).deliverMessage(data as Buffer, isBinary),
      drain: (ws) => (ws.data as WebSocket).deliverDrain(),
      ping: (ws, data) => void (ws.data as WebSocket).emit('ping', data),
      pong: (ws, data) => void (ws.data as WebSocket).emit('pong', data),
      close: (ws, code, reason) => this.closed(ws, code, reason),
      error: (error, ws) => {
        if (ws !== undefined && ws.data instanceof WebSocket) ws.data.deliverError(error as Error)
        else if (this.listenerCount('error') > 0) this.emit('error', error)
      },
    })
    if (options.port !== undefined) {
      const server = createHttpServer((_req, res) => {
        const body = 'Upgrade Required'
        res.writeHead(426, { 'Content-Length': body.length, 'Content-Type': 'text/plain' })
        res.end(body)
      })
      this.httpServer = server
      this.ownsServer = true
      server.listen(options.port, options.host, options.backlog, callback)
    } else {
      this.httpServer = options.server as HttpServer | HttpsServer | undefined
      this.ownsServer = false
    }
    if (this.httpServer !== undefined) {
      const server = this.httpServer
      const onListening = (): void => void this.emit('listening')
      const onError = (error: Error): void => void this.emit('error', error)
      const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
        this.handleUpgrade(request as InstanceType<U>, socket, head, (ws) =>
          this.emit('connection', ws, request),
        )
      }
      server.on('listening', onListening)
      server.on('error', onError)
      server.on('upgrade', onUpgrade)
      this.detach = () => {
        server.removeListener('listening', onListening)
        server.removeListener('error', onError)
        server.removeListener('upgrade', onUpgrade)
      }
    }
  }

  address(): types.AddressInfo | string | null {
    if (this.options.noServer) throw new Error('The server is operating in "noServer" mode')
    return this.httpServer?.address() ?? null
  }

  /** Whether this server handles `request` (the `path` option). */
  shouldHandle(request: InstanceType<U>): boolean {
    if (this.options.path === undefined) return true
    const url = request.url ?? '/'
    const query = url.indexOf('?')
    return (query === -1 ? url : url.slice(0, query)) === this.options.path
  }

  /**
   * Completes the handshake for an upgrade request and calls `callback(ws, request)`; refused
   * handshakes get their HTTP status (and `wsClientError` for malformed ones).
   */
  handleUpgrade(
    request: InstanceType<U>,
    socket: Duplex,
    upgradeHead: Buffer,
    callback: (client: InstanceType<T>, request: InstanceType<U>) => void,
  ): void {
    if (this.state !== 'running') {
      endAndRelease(
        socket,
        'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
      )
      return
    }
    if (!this.shouldHandle(request)) {
      endAndRelease(socket, 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    pendingUpgrades.set(request, { request, callback: callback as unknown as UpgradeCallback })
    this.rally.handleUpgrade(request, socket, upgradeHead)
  }

  /** Runs verifyClient and handleProtocols, emits 'headers'; refusals become HTTP answers. */
  private async negotiate(request: IncomingMessage, context: UpgradeContext): Promise<Pending | Response> {
    const pending = pendingUpgrades.get(request)
    pendingUpgrades.delete(request)
    if (pending === undefined) return new Response('No pending upgrade', { status: 500 })
    const verify = this.options.verifyClient
    if (verify !== undefined) {
      const info: VerifyClientInfo = {
        // Typed string as in @types/ws; undefined when the client sent no Origin, as in ws.
        origin: (request.headers.origin ?? request.headers['sec-websocket-origin']) as string,
        secure: (request.socket as Socket & { encrypted?: boolean }).encrypted === true,
        req: request,
      }
      const verdict =
        verify.length >= 2
          ? await new Promise<{
              ok: boolean
              code?: number
              message?: string
              headers?: Parameters<VerifyClientCallback>[3]
            }>((resolve) =>
              (verify as (i: VerifyClientInfo, cb: VerifyClientCallback) => void)(
                info,
                (ok, code, message, headers) => resolve({ ok, code, message, headers }),
              ),
            )
          : { ok: (verify as (i: VerifyClientInfo) => boolean)(info) }
      if (!verdict.ok) {
        const status = verdict.code ?? 401
        return new Response(verdict.message ?? 'Unauthorized', {
          status,
          headers: responseHeaders(verdict.headers),
        })
      }
    }
    const handleProtocols = this.options.handleProtocols
    if (context.protocols.length > 0) {
      if (handleProtocols !== undefined) {
        const chosen = handleProtocols(new Set(context.protocols), request as InstanceType<U>)
        context.protocol = chosen === false ? undefined : chosen
      } else {
        // ws accepts the first subprotocol offered when there is no handleProtocols.
        context.protocol = context.protocols[0]
      }
    }
    // ws lets listeners edit the response head; added lines are honoured here.
    const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade']
    const fixed = lines.length
    this.emit('headers', lines, request)
    for (const line of lines.slice(fixed)) {
      const colon = line.indexOf(':')
      if (colon > 0) context.headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
    }
    return pending
  }

  private opened(socket: ServerWebSocket<Pending | WebSocket>): Promise<void> {
    const pending = socket.data as Pending
    // A subclass given as the `WebSocket` option is built the same way (ws's own contract).
    const Socket = this.options.WebSocket ?? WebSocket
    const ws = new Socket(null, undefined, undefined, socket as ServerWebSocket<unknown>)
    socket.data = ws
    this.clients?.add(ws as InstanceType<T>)
    pending.callback(ws, pending.request)
    // Reading starts after this turn of the event loop, so that listeners attached right after
    // the callback (even after an await) see the first messages.
    return new Promise((resolve) => setImmediate(resolve))
  }

  private closed(socket: ServerWebSocket<Pending | WebSocket>, code: number, reason: string): void {
    const ws = socket.data
    if (!(ws instanceof WebSocket)) return
    this.clients?.delete(ws as InstanceType<T>)
    ws.deliverClose({ code, reason, wasClean: true, error: undefined })
  }

  /**
   * Stops accepting connections. As in ws 8, open connections are not closed (close them, or
   * use Rally's `server.close()` semantics through `closeAll`); the callback runs once the
   * server this instance created has closed.
   */
  close(callback?: (error?: Error) => void): void {
    if (this.state === 'closed') {
      if (callback) process.nextTick(callback, new Error('The server is not running'))
      return
    }
    this.state = 'closing'
    this.detach?.()
    const finish = (): void => {
      this.state = 'closed'
      this.emit('close')
      callback?.()
    }
    if (this.ownsServer && this.httpServer !== undefined) this.httpServer.close(() => finish())
    else process.nextTick(finish)
  }

  /** Rally extension: closes every connection with 1001 and waits for them (bounded). */
  closeAll(): Promise<void> {
    return this.rally.close()
  }

  /** Rally extension: the native server underneath (topics: `rally.publish`). */
  get rallyServer(): RallyServer<Pending | WebSocket> {
    return this.rally
  }
}

/**
 * The event overloads of @types/ws for the server: `wss.on('connection', (ws, request) => …)`
 * gets its parameter types without annotations. Types only: EventEmitter does the work.
 */
type ServerListener<S, A extends unknown[]> = (this: S, ...args: A) => void
interface WebSocketServerEvents<T extends typeof WebSocket, U extends typeof IncomingMessage> {
  connection: [socket: InstanceType<T>, request: InstanceType<U>]
  error: [error: Error]
  headers: [headers: string[], request: InstanceType<U>]
  close: []
  listening: []
  wsClientError: [error: Error, socket: Duplex, request: InstanceType<U>]
}

export interface WebSocketServer<T extends typeof WebSocket, U extends typeof IncomingMessage> {
  on<K extends keyof WebSocketServerEvents<T, U>>(
    event: K,
    listener: ServerListener<this, WebSocketServerEvents<T, U>[K]>,
  ): this
  // biome-ignore lint/suspicious/noExplicitAny: any event name takes any listener, as in @types/ws.
  on(event: string | symbol, listener: (this: this, ...args: any[]) => void): this
  once<K extends keyof WebSocketServerEvents<T, U>>(
    event: K,
    listener: ServerListener<this, WebSocketServerEvents<T, U>[K]>,
  ): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  once(event: string | symbol, listener: (this: this, ...args: any[]) => void): this
  off<K extends keyof WebSocketServerEvents<T, U>>(
    event: K,
    listener: ServerListener<this, WebSocketServerEvents<T, U>[K]>,
  ): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  off(event: string | symbol, listener: (this: this, ...args: any[]) => void): this
  addListener<K extends keyof WebSocketServerEvents<T, U>>(
    event: K,
    listener: (...args: WebSocketServerEvents<T, U>[K]) => void,
  ): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  addListener(event: string | symbol, listener: (...args: any[]) => void): this
  removeListener<K extends keyof WebSocketServerEvents<T, U>>(
    event: K,
    listener: (...args: WebSocketServerEvents<T, U>[K]) => void,
  ): this
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  removeListener(event: string | symbol, listener: (...args: any[]) => void): this
}

/** verifyClient's refusal headers (node:http's types: numbers, lists) as a Response takes them. */
function responseHeaders(headers: Parameters<VerifyClientCallback>[3]): Headers | undefined {
  if (headers === undefined) return undefined
  const out = new Headers()
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const item of value) out.append(name, String(item))
    else out.set(name, String(value))
  }
  return out
}

/** Requests between handleUpgrade and the `upgrade` hook, keyed by the request object. */
const pendingUpgrades = new WeakMap<IncomingMessage, Pending>()
