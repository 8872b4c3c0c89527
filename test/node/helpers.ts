/**
 * Shared helpers for the integration tests over real sockets (127.0.0.1 only).
 *
 * - `once(target, event, ms)`: the next event of an EventTarget or EventEmitter, or a rejection
 *   after `ms` — no test waits forever.
 * - `startServer(options)`: a Rally server on an ephemeral port.
 * - `openClient(url, ...)`: a WHATWG client, resolved once open.
 * - `RawClient`: a node:net client that writes hand-made handshakes and frames and reads raw bytes
 *   back (HTTP responses, server frames), for protocol-violation tests.
 * - `disposeAll()`: destroys every socket and closes every server these helpers created; each
 *   test file calls it in `after`.
 */
import { Buffer } from 'node:buffer'
import type { Server as HttpServer } from 'node:http'
import net from 'node:net'
import {
  createServer,
  type RallyServer,
  type ServerOptions,
  WebSocket,
  type WebSocketOptions,
} from '../../src/index.js'
import { computeAcceptKey } from '../../src/protocol/index.js'
import { EventQueue, once } from '../support/events.js'
import { clientFrame, closePayload, type FrameSpec, type WireFrame } from '../support/frames.js'
import { closedPort, listenOnFreePort } from '../support/net.js'
import { type HttpHead, RawWebSocket } from '../support/raw-websocket.js'
import { sleep, turn, waitUntil, withTimeout } from '../support/timing.js'

export { closedPort }

/** The sample key of RFC 6455 1.3 and its accept value. */
export const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
export const ACCEPT = computeAcceptKey(KEY)

export const HOST = '127.0.0.1'

// ------------------------------------------------------------------ resource tracking

const rawClients = new Set<RawClient>()
const clients = new Set<WebSocket>()
const servers = new Set<RallyServer<unknown>>()
const netServers = new Set<net.Server | HttpServer>()
const netSockets = new Set<net.Socket>()

/** Destroys every raw socket and client, then closes every server (each bounded in time). */
export async function disposeAll(): Promise<void> {
  for (const raw of rawClients) raw.destroy()
  rawClients.clear()
  for (const ws of clients) {
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
  }
  clients.clear()
  for (const socket of netSockets) socket.destroy()
  netSockets.clear()
  const closing: Promise<unknown>[] = []
  for (const server of servers)
    closing.push(withTimeout(server.close(), 3000, 'server.close()').catch(() => {}))
  servers.clear()
  for (const server of netServers) {
    closing.push(
      new Promise<void>((resolve) => {
        if ('closeAllConnections' in server) server.closeAllConnections()
        server.close(() => resolve())
      }),
    )
  }
  netServers.clear()
  await Promise.all(closing)
}

/** Lets `disposeAll` clean up a socket or server created outside these helpers. */
export function track<T extends net.Socket | net.Server | HttpServer | WebSocket>(resource: T): T {
  if (resource instanceof WebSocket) clients.add(resource)
  else if (resource instanceof net.Socket) netSockets.add(resource)
  else netServers.add(resource)
  return resource
}

// ------------------------------------------------------------------ timing

export { EventQueue, once, sleep, turn, waitUntil, withTimeout }

// ------------------------------------------------------------------ servers and clients

export interface StartedServer<U> {
  server: RallyServer<U>
  port: number
  url: string
}

/** A Rally server on 127.0.0.1 and an ephemeral port; heartbeats off unless given. */
export async function startServer<U = undefined>(
  options: Omit<ServerOptions<U>, 'port' | 'host'> = {},
): Promise<StartedServer<U>> {
  const server = createServer<U>({ heartbeat: false, ...options, port: 0, host: HOST })
  servers.add(server as RallyServer<unknown>)
  await withTimeout(server.ready(), 5000, 'server.ready()')
  const port = server.port
  if (port === undefined) throw new Error('server has no port')
  return { server, port, url: `ws://${HOST}:${port}` }
}

/** A WHATWG client (tracked for cleanup), not waited for. */
export function newClient(url: string, protocols?: string | string[], options?: WebSocketOptions): WebSocket {
  const ws = new WebSocket(url, protocols, options)
  clients.add(ws)
  return ws
}

/** A WHATWG client, resolved once open; rejects on error, close or timeout first. */
export function openClient(
  url: string,
  protocols?: string | string[],
  options?: WebSocketOptions,
  ms = 5000,
): Promise<WebSocket> {
  const ws = newClient(url, protocols, options)
  return new Promise<WebSocket>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`client to ${url} did not open within ${ms} ms`))
    }, ms)
    const onOpen = (): void => {
      cleanup()
      resolve(ws)
    }
    const onFail = (event: Event): void => {
      cleanup()
      reject(
        new Error(
          `client to ${url} failed before open: ${event.type} ${(event as { message?: string }).message ?? ''}`,
        ),
      )
    }
    const cleanup = (): void => {
      clearTimeout(timer)
      ws.removeEventListener('open', onOpen)
      ws.removeEventListener('error', onFail)
      ws.removeEventListener('close', onFail)
    }
    ws.addEventListener('open', onOpen)
    ws.addEventListener('error', onFail)
    ws.addEventListener('close', onFail)
  })
}

/** Collects a client's messages as they come: `messages.next()`. */
export function collectMessages(ws: WebSocket): EventQueue<MessageEvent> {
  const queue = new EventQueue<MessageEvent>()
  ws.addEventListener('message', (event) => queue.push(event as MessageEvent))
  return queue
}

/** Listens on 127.0.0.1:0 (tracked for `disposeAll`) and returns the port. */
export function listen(server: net.Server | HttpServer): Promise<number> {
  return listenOnFreePort(track(server))
}

// ------------------------------------------------------------------ hand-made bytes

export { clientFrame as frame, closePayload, type FrameSpec as FrameBuildOptions }

export interface HandshakeRequestOptions {
  method?: string
  path?: string
  /** Headers to add or override; `undefined` removes a default one. Names as written. */
  headers?: Record<string, string | undefined>
}

/** A hand-made opening handshake request (a valid one by default). */
export function handshakeRequest(options: HandshakeRequestOptions = {}): string {
  const defaults: Record<string, string | undefined> = {
    Host: HOST,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': KEY,
    'Sec-WebSocket-Version': '13',
  }
  const fields = { ...defaults, ...options.headers }
  let head = `${options.method ?? 'GET'} ${options.path ?? '/'} HTTP/1.1\r\n`
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) head += `${name}: ${value}\r\n`
  }
  return `${head}\r\n`
}

// ------------------------------------------------------------------ raw client

/** A response as RawClient read it. */
export type HttpResponse = HttpHead

/** A frame as the server sent it. */
export type ServerFrame = WireFrame

/** The close code of a close frame's payload (undefined when empty). */
export function closeCodeOf(frame: ServerFrame): number | undefined {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined
}

export function closeReasonOf(frame: ServerFrame): string {
  return frame.payload.subarray(2).toString('utf8')
}

/**
 * The suite's raw peer (test/support/raw-websocket.ts), tracked for `disposeAll`: the test decides
 * every byte it writes and reads the server's bytes back (an HTTP response head, then frames).
 */
export class RawClient extends RawWebSocket {
  private constructor(socket: net.Socket) {
    super(socket)
    rawClients.add(this)
  }

  /** Connects (TCP only). */
  static async connect(port: number, ms = 5000): Promise<RawClient> {
    return new RawClient(await RawWebSocket.dialSocket({ port, timeout: ms }))
  }

  /** Connects, sends a valid handshake (plus `extra` bytes in the same write) and checks the 101. */
  static async open(
    port: number,
    options: HandshakeRequestOptions = {},
    extra?: Uint8Array,
  ): Promise<RawClient> {
    const raw = await RawClient.connect(port)
    const request = Buffer.from(handshakeRequest(options), 'latin1')
    raw.write(extra === undefined ? request : Buffer.concat([request, extra]))
    const response = await raw.readHead()
    if (response.status !== 101) throw new Error(`expected 101, got ${response.statusLine} ${response.body}`)
    if (response.headers['sec-websocket-accept'] !== ACCEPT) throw new Error('wrong Sec-WebSocket-Accept')
    return raw
  }

  override destroy(): void {
    super.destroy()
    rawClients.delete(this)
  }
}
