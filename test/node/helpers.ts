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
import { clientFrame, closePayload, type FrameSpec, parseFrame, type WireFrame } from '../support/frames.js'
import { closedPort, listenOnFreePort } from '../support/net.js'
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

export interface HttpResponse {
  statusLine: string
  status: number
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>
  body: string
}

/** A frame as the server sent it. */
export type ServerFrame = WireFrame

/** The close code of a close frame's payload (undefined when empty). */
export function closeCodeOf(frame: ServerFrame): number | undefined {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined
}

export function closeReasonOf(frame: ServerFrame): string {
  return frame.payload.subarray(2).toString('utf8')
}

/** Decodes a chunked body starting at `start`; undefined until it is complete. */
function decodeChunked(buffer: Buffer, start: number): { body: Buffer; total: number } | undefined {
  const parts: Buffer[] = []
  let position = start
  for (;;) {
    const lineEnd = buffer.indexOf('\r\n', position)
    if (lineEnd === -1) return undefined
    const size = Number.parseInt(buffer.subarray(position, lineEnd).toString('latin1'), 16)
    if (!Number.isInteger(size)) throw new Error('malformed chunked body')
    const dataStart = lineEnd + 2
    if (buffer.length < dataStart + size + 2) return undefined
    if (size === 0) return { body: Buffer.concat(parts), total: dataStart + 2 }
    parts.push(buffer.subarray(dataStart, dataStart + size))
    position = dataStart + size + 2
  }
}

/**
 * A plain TCP client that speaks WebSocket by hand: the test decides every byte it writes, and
 * reads the server's bytes back (an HTTP response head, then frames).
 */
export class RawClient {
  readonly socket: net.Socket
  /** Bytes received and not yet consumed by `readHead` / `readFrame`. */
  buffer: Buffer = Buffer.alloc(0)
  /** The peer sent FIN (an orderly TCP close). */
  gotEnd = false
  /** The socket is closed. */
  closed = false
  /** A socket error (ECONNRESET...), if any. */
  error: Error | undefined
  private readonly waiters = new Set<() => void>()

  private constructor(socket: net.Socket) {
    this.socket = socket
    rawClients.add(this)
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
      this.wake()
    })
    socket.on('end', () => {
      this.gotEnd = true
      this.wake()
    })
    socket.on('error', (error) => {
      this.error = error
    })
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
  }

  /** Connects (TCP only). */
  static connect(port: number, ms = 5000): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port })
      socket.setNoDelay(true)
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`raw connect to ${port} timed out`))
      }, ms)
      socket.once('error', (error) => {
        clearTimeout(timer)
        reject(error)
      })
      socket.once('connect', () => {
        clearTimeout(timer)
        resolve(new RawClient(socket))
      })
    })
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

  /** Writes the chunks in one write (one TCP segment on loopback for small sizes). */
  write(...chunks: (Uint8Array | string)[]): void {
    const bytes = Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c)))
    this.socket.write(bytes)
  }

  destroy(): void {
    this.socket.destroy()
    rawClients.delete(this)
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter()
  }

  /** Resolves with `check()`'s first defined value, re-checked on every byte and on close. */
  private waitFor<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        this.waiters.delete(attempt)
      }
      const attempt = (): void => {
        let value: T | undefined
        try {
          value = check()
        } catch (error) {
          done()
          reject(error)
          return
        }
        if (value !== undefined) {
          done()
          resolve(value)
        } else if (this.closed) {
          done()
          reject(
            new Error(`connection closed while waiting for ${what} (${this.buffer.length} bytes unread)`),
          )
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out after ${ms} ms waiting for ${what} (${this.buffer.length} bytes unread)`))
      }, ms)
      this.waiters.add(attempt)
      attempt()
    })
  }

  /** Reads an HTTP response head and its Content-Length body. */
  readHead(ms = 5000): Promise<HttpResponse> {
    return this.waitFor(
      () => {
        const end = this.buffer.indexOf('\r\n\r\n')
        if (end === -1) return undefined
        const lines = this.buffer.subarray(0, end).toString('latin1').split('\r\n')
        const statusLine = lines[0]!
        const headers: Record<string, string> = {}
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':')
          const name = line.slice(0, colon).trim().toLowerCase()
          const value = line.slice(colon + 1).trim()
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
        }
        const status = Number(statusLine.split(' ')[1])
        let body: Buffer
        let total: number
        if (headers['transfer-encoding'] === 'chunked') {
          const chunked = decodeChunked(this.buffer, end + 4)
          if (chunked === undefined) return undefined
          ;({ body, total } = chunked)
        } else {
          // A 101 has no body; the bytes after its head are frames.
          const bodyLength = status === 101 ? 0 : Number(headers['content-length'] ?? 0)
          total = end + 4 + bodyLength
          if (this.buffer.length < total) return undefined
          body = this.buffer.subarray(end + 4, total)
        }
        this.buffer = this.buffer.subarray(total)
        return { statusLine, status, headers, body: body.toString('utf8') }
      },
      ms,
      'an HTTP response',
    )
  }

  /** Reads the next frame from the server. */
  readFrame(ms = 5000): Promise<ServerFrame> {
    return this.waitFor(
      () => {
        const parsed = parseFrame(this.buffer)
        if (parsed === undefined) return undefined
        this.buffer = this.buffer.subarray(parsed.size)
        return parsed.frame
      },
      ms,
      'a frame',
    )
  }

  /** Waits for the TCP connection to close. */
  waitForClose(ms = 5000): Promise<void> {
    return this.waitFor(() => (this.closed ? true : undefined), ms, 'the TCP close').then(() => undefined)
  }
}
