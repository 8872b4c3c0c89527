/**
 * The Rally WebSocket server: `createServer(options)` with one handler object.
 *
 * It listens on its own port (`port`, `tls` for wss://), or attaches to any `node:http(s)` server
 * through `handleUpgrade(req, socket, head)` — Express, Fastify and Hono's Node server included.
 *
 * This class is the public face; the work is done by one module per concern:
 * - own-port.ts: the listening socket and reading request heads on it;
 * - admission.ts: connection caps, header count and allowed origins;
 * - handshake-decision.ts: validation, negotiation, the `upgrade` handler, the 101 or the refusal;
 * - lifecycle.ts: open connections, counters, errors, liveness and shutdown.
 */
import type { Buffer } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import type { Http2SecureServer, Http2Server } from 'node:http2'
import type { AddressInfo, Server as NetServer } from 'node:net'
import type { Duplex } from 'node:stream'
import {
  checkDeflateOptions,
  type PerMessageDeflateOptions,
} from '../protocol/extensions/permessage-deflate.js'
import { resolveLimits } from '../protocol/index.js'
import type { TopicRegistry } from '../pubsub/topic-registry.js'
import { Admission } from './admission.js'
import { HandshakeDecision } from './handshake-decision.js'
import { attachHttp2, type Http2AttachOptions } from './http2.js'
import { ConnectionLifecycle } from './lifecycle.js'
import { OwnPort } from './own-port.js'
import type { SendData, SendOptions, ServerWebSocket } from './server-websocket.js'
import type { ServerOptions, ServerStats } from './types.js'
import type { UpgradeRequest } from './upgrade-request.js'

const DEFAULT_HANDSHAKE_TIMEOUT = 10_000
const DEFAULT_MAX_REQUEST_BODY = 1024 * 1024

export class RallyServer<UserData = undefined> {
  private readonly lifecycle: ConnectionLifecycle<UserData>
  private readonly handshakes: HandshakeDecision<UserData>
  private readonly ownPort: OwnPort | undefined
  private closing: Promise<void> | undefined

  constructor(options: ServerOptions<UserData>) {
    const limits = resolveLimits({
      ...options.limits,
      ...(options.maxPayload !== undefined ? { maxMessageSize: options.maxPayload } : {}),
    })
    const deflate = options.perMessageDeflate
    const deflateOptions: PerMessageDeflateOptions | undefined =
      deflate === true ? {} : deflate === false || deflate === undefined ? undefined : deflate
    if (deflateOptions !== undefined) checkDeflateOptions(deflateOptions)
    const admission = new Admission(options, limits)
    const lifecycle = new ConnectionLifecycle(options, limits, admission, deflateOptions)
    this.lifecycle = lifecycle
    const handshakeTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT
    const handshakes = new HandshakeDecision(
      options,
      {
        admission,
        deflateOptions,
        handshakeTimeout,
        closeTimeout: lifecycle.driverOptions.closeTimeout,
      },
      lifecycle,
    )
    this.handshakes = handshakes
    this.ownPort =
      options.port === undefined
        ? undefined
        : new OwnPort(
            {
              port: options.port,
              host: options.host,
              tls: options.tls,
              limits,
              handshakeTimeout,
              request: options.request,
              maxRequestBodySize: options.maxRequestBodySize ?? DEFAULT_MAX_REQUEST_BODY,
            },
            {
              get closing() {
                return lifecycle.closing
              },
              upgrade: (request, socket, head) => handshakes.handle(request, socket, head),
              reject: (socket, error) => handshakes.reject(socket, error),
              fail: (socket, error) => handshakes.fail(socket, error),
              reportError: (error, kind) => lifecycle.reportError(error, kind),
            },
          )
  }

  /** Resolves once the server listens (at once when attached to another server). */
  ready(): Promise<void> {
    return this.ownPort?.listening ?? Promise.resolve()
  }

  /** The address the server listens on; undefined when attached. */
  address(): AddressInfo | undefined {
    const address = this.ownPort?.listener.address()
    return address !== null && typeof address === 'object' ? address : undefined
  }

  get port(): number | undefined {
    return this.address()?.port
  }

  /** Open connections. */
  get clients(): ReadonlySet<ServerWebSocket<UserData>> {
    return this.lifecycle.sockets
  }

  /**
   * @internal The TCP or TLS server created for `port`; undefined when attached with
   * `handleUpgrade`.
   */
  get listener(): NetServer | undefined {
    return this.ownPort?.listener
  }

  /** @internal The topic index (topic → sockets, socket → topics). */
  get topicRegistry(): TopicRegistry<ServerWebSocket<UserData>> {
    return this.lifecycle.topicRegistry
  }

  /**
   * Sends a message to every subscriber of `topic` (except `exclude`): framed — and compressed,
   * where the sockets' settings allow — once, the same bytes written to each. Never blocks: a
   * slow subscriber gets 'buffered' or, past `maxBackpressure`, loses the message, and the
   * others are not delayed. Returns the number of sockets the message went to.
   */
  publish(topic: string, data: SendData, options?: SendOptions, exclude?: ServerWebSocket<UserData>): number {
    return this.lifecycle.publish(topic, data, options, exclude)
  }

  /** Number of sockets subscribed to `topic`. */
  subscriberCount(topic: string): number {
    return this.lifecycle.topicRegistry.count(topic)
  }

  /** A snapshot of the counters: a plain object, cheap enough to read every second. */
  stats(): ServerStats {
    const counters = this.lifecycle.counters
    return {
      ...counters,
      connections: this.lifecycle.sockets.size,
      handshakeRejections: { ...counters.handshakeRejections },
      transports: { ...counters.transports },
    }
  }

  /**
   * Completes (or refuses) a WebSocket handshake for an upgrade request received by any
   * `node:http(s)` server. `head` holds bytes that arrived after the request head: they are the
   * client's first frames and are processed before anything read later.
   */
  handleUpgrade(req: UpgradeRequest | IncomingMessage, socket: Duplex, head: Buffer): void {
    this.handshakes.handle(req, socket, head)
  }

  /**
   * Serves WebSockets over HTTP/2 (RFC 8441) on a `node:http2` server, created with
   * `allowHTTP1: true` to keep HTTP/1.1 clients: its sessions advertise
   * SETTINGS_ENABLE_CONNECT_PROTOCOL, CONNECT streams with `:protocol websocket` go through the
   * same handshake as an upgrade (path, admission, `upgrade`, subprotocols, permessage-deflate)
   * and are answered `:status 200`, and HTTP/1.1 upgrades on the same server go to
   * `handleUpgrade`. Other streams are left to the application's handlers. Returns a function
   * that detaches.
   */
  attachHttp2(server: Http2SecureServer | Http2Server, options?: Http2AttachOptions): () => void {
    const handshakes = this.handshakes
    return attachHttp2(
      server,
      {
        handle: (request, stream, head) => handshakes.handle(request, stream, head),
        handleUpgrade: (request, socket, head) => handshakes.handle(request, socket, head),
        refuse: (stream, error) => handshakes.reject(stream, error),
        maxHeaderBytes: this.lifecycle.driverOptions.limits?.maxHeaderBytes,
      },
      options,
    )
  }

  /**
   * Shuts down: stops accepting, sends 1001 Going Away to every connection, waits for the closing
   * handshakes (each bounded by `closeTimeout`), then closes the listening server.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing
    const waits: Promise<void>[] = [this.lifecycle.closeAll()]
    // Refused peers and handshakes still arriving (slowloris) are not waited for.
    this.handshakes.destroyRefused()
    if (this.ownPort !== undefined) waits.push(this.ownPort.close())
    this.closing = Promise.all(waits).then(() => undefined)
    return this.closing
  }
}

/**
 * Creates a WebSocket server. With `port` it listens at once: `await server.ready()`.
 *
 * `ws.data` is typed by the generic, `createServer<{ user: string }>(...)`. Without it,
 * TypeScript infers it from `upgrade`'s result only when `upgrade` is written before the
 * handlers that take `ws`. The default, here and on RallyServer and ServerWebSocket, is
 * `undefined` (no `upgrade`, no data); code for sockets of any server takes
 * `ServerWebSocket<unknown>`.
 */
export function createServer<UserData = undefined>(options: ServerOptions<UserData>): RallyServer<UserData> {
  return new RallyServer<UserData>(options)
}
