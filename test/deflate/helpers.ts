/**
 * Helpers for the permessage-deflate suite (127.0.0.1 only, every wait bounded).
 *
 * - `startServer(options)`: a Rally server on an ephemeral port, closed by `disposeAll()`.
 * - `openClient(url, options)`: a Rally WHATWG client, resolved once open.
 * - `RawClient`: a node:net client with a hand-made handshake (offering permessage-deflate or
 *   not) that sends masked frames built by hand and parses the server's frames, RSV bits included.
 * - `RawServer`: a node:net server that answers a client's handshake with a chosen
 *   `Sec-WebSocket-Extensions` response and parses the client's (masked) frames.
 * - `deflate(data)` / `inflate(payload)`: RFC 7692 7.2.1 compression without the 00 00 FF FF tail,
 *   and its inverse, each message on its own (no context takeover).
 * - `recordingHandler()`: a sans-I/O ConnectionHandler that keeps each frame written (first byte
 *   and payload) and each internal error, for a Connection driven without a socket.
 */
import { Buffer } from 'node:buffer'
import { randomFillSync } from 'node:crypto'
import net from 'node:net'
import zlib from 'node:zlib'
import {
  type CloseEvent,
  createServer,
  type ErrorEvent,
  type RallyServer,
  type ServerOptions,
  WebSocket,
  type WebSocketOptions,
} from '../../src/index.js'
import type { ConnectionHandler } from '../../src/protocol/connection.js'
import { computeAcceptKey } from '../../src/protocol/index.js'
import { EventQueue, once } from '../support/events.js'
import { clientFrame, parseFrame, type WireFrame } from '../support/frames.js'
import { type HttpHead, RawWebSocket } from '../support/raw-websocket.js'
import { sleep, withTimeout } from '../support/timing.js'

export const HOST = '127.0.0.1'
export const KiB = 1024
export const MiB = 1024 * 1024
export const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='

export const Op = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9, Pong: 0xa } as const
export const RSV1 = 0x40

// ------------------------------------------------------------------ resource tracking

const servers = new Set<RallyServer<unknown>>()
const clients = new Set<WebSocket>()
const sockets = new Set<net.Socket>()
const netServers = new Set<net.Server>()

export function track<T extends WebSocket | net.Socket | net.Server>(resource: T): T {
  if (resource instanceof WebSocket) clients.add(resource)
  else if (resource instanceof net.Socket) sockets.add(resource)
  else netServers.add(resource)
  return resource
}

/** Destroys every client and socket, then closes every server (each bounded in time). */
export async function disposeAll(): Promise<void> {
  for (const ws of clients) if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
  clients.clear()
  for (const socket of sockets) socket.destroy()
  sockets.clear()
  const closing: Promise<unknown>[] = []
  for (const server of servers)
    closing.push(withTimeout(server.close(), 6000, 'server.close()').catch(() => {}))
  servers.clear()
  for (const server of netServers) closing.push(new Promise<void>((resolve) => server.close(() => resolve())))
  netServers.clear()
  await Promise.all(closing)
}

// ------------------------------------------------------------------ timing

/** The suite's name for the shared event queue. */
export { EventQueue as Queue, once, sleep, withTimeout }

// ------------------------------------------------------------------ Rally peers

export interface Started<U> {
  server: RallyServer<U>
  port: number
  url: string
}

export async function startServer<U = undefined>(
  options: Omit<ServerOptions<U>, 'port' | 'host'> = {},
): Promise<Started<U>> {
  const server = createServer<U>({ heartbeat: false, ...options, port: 0, host: HOST })
  servers.add(server as RallyServer<unknown>)
  await withTimeout(server.ready(), 5000, 'server.ready()')
  const port = server.port
  if (port === undefined) throw new Error('server has no port')
  return { server, port, url: `ws://${HOST}:${port}/` }
}

/** A server whose `message` handler echoes every message with its type. */
export function startEchoServer(options: Omit<ServerOptions<undefined>, 'port' | 'host'> = {}) {
  return startServer<undefined>({
    decodeText: false,
    message(ws, data, isBinary) {
      ws.send(data, { binary: isBinary })
    },
    error() {},
    ...options,
  })
}

/** A Rally client, resolved once open (rejects on error/close before open). */
export async function openClient(url: string, options?: WebSocketOptions, ms = 5000): Promise<WebSocket> {
  const ws = track(new WebSocket(url, [], options))
  ws.binaryType = 'arraybuffer'
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true })
      ws.addEventListener('error', (e) => reject(new Error(`client error: ${(e as ErrorEvent).message}`)), {
        once: true,
      })
    }),
    ms,
    `client open ${url}`,
  )
  return ws
}

/** Collects a client's messages as Buffers (text as utf8 Buffers) into a queue. */
export function messageQueue(
  ws: WebSocket,
): EventQueue<{ data: Buffer; text: string | undefined; binary: boolean }> {
  const queue = new EventQueue<{ data: Buffer; text: string | undefined; binary: boolean }>()
  ws.addEventListener('message', (e) => {
    const data = (e as MessageEvent).data as string | ArrayBuffer
    if (typeof data === 'string') queue.push({ data: Buffer.from(data), text: data, binary: false })
    else queue.push({ data: Buffer.from(data), text: undefined, binary: true })
  })
  ws.addEventListener('close', (e) => {
    const { code, reason } = e as CloseEvent
    queue.fail(new Error(`client closed with ${code} ${reason}`))
  })
  return queue
}

// ------------------------------------------------------------------ payloads

/** Deterministic text that compresses well (repetitive, with some variety and non-ASCII). */
export function compressibleText(size: number): string {
  const unit = 'The quick brown fox jumps over the lazy dog — naïve café 0123456789. '
  const parts: string[] = []
  let bytes = 0
  for (let i = 0; bytes < size; i++) {
    const part = `${unit}${i};`
    parts.push(part)
    bytes += Buffer.byteLength(part)
  }
  // Cut at a byte length, on a code point boundary (pad the tail with ASCII).
  let text = Buffer.from(parts.join('')).subarray(0, size).toString('utf8')
  if (text.endsWith('\uFFFD')) text = text.slice(0, -1)
  return text + 'x'.repeat(size - Buffer.byteLength(text))
}

export function compressibleBytes(size: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  // A 64-byte period that shifts every 4 KiB: compressible even with a 256-byte window.
  for (let i = 0; i < size; i++) out[i] = ((i & 0x3f) * 3 + (i >> 12)) & 0xff
  return out
}

export function randomBytes(size: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  if (size > 0) randomFillSync(out)
  return out
}

/** Random ASCII text (letters), which deflate cannot squeeze much. */
export function randomText(size: number): string {
  const bytes = randomBytes(size)
  for (let i = 0; i < size; i++) bytes[i] = 0x61 + (bytes[i]! % 26)
  return bytes.toString('latin1')
}

// ------------------------------------------------------------------ deflate by hand

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

/** RFC 7692 7.2.1: deflate one message, Z_SYNC_FLUSH, strip the 00 00 FF FF tail. */
export function deflate(data: Uint8Array | string, options: zlib.ZlibOptions = {}): Buffer {
  const out = zlib.deflateRawSync(typeof data === 'string' ? Buffer.from(data) : data, {
    ...options,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  })
  assertTail(out)
  return out.subarray(0, out.length - 4)
}

function assertTail(out: Buffer): void {
  if (out.length < 4 || !out.subarray(out.length - 4).equals(TAIL)) throw new Error('no 00 00 ff ff tail')
}

/** RFC 7692 7.2.2: append the tail and inflate one message. */
export function inflate(payload: Uint8Array): Buffer {
  return zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { finishFlush: zlib.constants.Z_SYNC_FLUSH })
}

// ------------------------------------------------------------------ frames

export type ParsedFrame = WireFrame

/** A masked client frame built by hand. */
export { clientFrame }

/** Parses frames (masked or not) from a byte stream. */
export class FrameReader {
  private buffer: Buffer = Buffer.alloc(0)
  readonly frames = new EventQueue<ParsedFrame>()

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    for (let next = parseFrame(this.buffer); next !== undefined; next = parseFrame(this.buffer)) {
      this.frames.push(next.frame)
      this.buffer = this.buffer.subarray(next.size)
    }
  }
}

interface Head {
  status: number
  headers: Map<string, string[]>
}

function parseHead(text: string): Head {
  const lines = text.split('\r\n')
  const status = Number(lines[0]!.split(' ')[1])
  const headers = new Map<string, string[]>()
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const list = headers.get(name) ?? []
    list.push(line.slice(colon + 1).trim())
    headers.set(name, list)
  }
  return { status, headers }
}

/** Reads an HTTP head from a socket; resolves with it and the bytes after it. */
function readHead(socket: net.Socket, ms: number): Promise<{ head: Head; rest: Buffer; raw: string }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      let buffered = Buffer.alloc(0)
      const onData = (chunk: Buffer): void => {
        buffered = Buffer.concat([buffered, chunk])
        const end = buffered.indexOf('\r\n\r\n')
        if (end === -1) return
        socket.removeListener('data', onData)
        socket.removeListener('close', onClose)
        const raw = buffered.subarray(0, end).toString('latin1')
        resolve({ head: parseHead(raw), rest: buffered.subarray(end + 4), raw })
      }
      const onClose = (): void => reject(new Error('socket closed before an HTTP head arrived'))
      socket.on('data', onData)
      socket.once('close', onClose)
    }),
    ms,
    'an HTTP head',
  )
}

/**
 * A hand-driven client (test/support/raw-websocket.ts): handshake by hand, frames by hand, the
 * server's frames parsed, RSV bits included.
 */
export class RawClient extends RawWebSocket {
  head: HttpHead | undefined

  /**
   * Connects and performs the handshake, offering `extensions` (default: the browsers' offer).
   * Pass null to offer nothing. Resolves once the 101 arrived.
   */
  static async connect(
    port: number,
    extensions: string | string[] | null = 'permessage-deflate; client_max_window_bits',
  ): Promise<RawClient> {
    const client = new RawClient(track(await RawWebSocket.dialSocket({ port })))
    let request = `GET / HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n`
    for (const line of extensions === null ? [] : typeof extensions === 'string' ? [extensions] : extensions)
      request += `Sec-WebSocket-Extensions: ${line}\r\n`
    client.write(`${request}\r\n`)
    const head = await client.readHead()
    if (head.status !== 101) throw new Error(`handshake answered ${head.status}`)
    if (head.headers['sec-websocket-accept'] !== computeAcceptKey(KEY)) throw new Error('bad accept')
    client.head = head
    return client
  }

  /** The response's Sec-WebSocket-Extensions, joined. */
  get extensions(): string {
    return this.head?.headers['sec-websocket-extensions'] ?? ''
  }

  send(...frames: Buffer[]): void {
    this.write(...frames)
  }

  nextFrame(ms = 5000): Promise<ParsedFrame> {
    return this.readFrame(ms)
  }

  /** Skips frames until a data frame or close (pongs and pings are skipped). */
  async nextDataFrame(ms = 5000): Promise<ParsedFrame> {
    while (true) {
      const frame = await this.nextFrame(ms)
      if (frame.opcode !== Op.Pong && frame.opcode !== Op.Ping) return frame
    }
  }

  /** Reads one whole message (all fragments); inflates it when RSV1 is set. */
  async nextMessage(ms = 5000): Promise<{ opcode: number; compressed: boolean; data: Buffer }> {
    const first = await this.nextDataFrame(ms)
    if (first.opcode === Op.Close) throw new Error(`server closed with ${closeCodeOf(first)}`)
    const pieces = [first.payload]
    let last = first
    while (!last.fin) {
      last = await this.nextDataFrame(ms)
      pieces.push(last.payload)
    }
    const compressed = (first.rsv & RSV1) !== 0
    const payload = Buffer.concat(pieces)
    return { opcode: first.opcode, compressed, data: compressed ? inflate(payload) : payload }
  }

  /** Waits for the server's close frame, skipping anything else; returns its code. */
  async closeCode(ms = 5000): Promise<number | undefined> {
    while (true) {
      const frame = await this.nextFrame(ms)
      if (frame.opcode === Op.Close) return closeCodeOf(frame)
    }
  }
}

export function closeCodeOf(frame: ParsedFrame): number | undefined {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined
}

/**
 * A hand-driven server for one client: answers the handshake with `extensions` as the
 * Sec-WebSocket-Extensions response (none when undefined) and parses the client's frames.
 */
export class RawServer {
  readonly server: net.Server
  readonly connections = new EventQueue<{ socket: net.Socket; reader: FrameReader; request: Head }>()
  port = 0

  private constructor(extensions: string | undefined) {
    this.server = track(
      net.createServer((socket) => {
        track(socket)
        socket.on('error', () => {})
        readHead(socket, 5000).then(
          ({ head, rest }) => {
            const key = head.headers.get('sec-websocket-key')?.[0] ?? ''
            let response = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n`
            if (extensions !== undefined) response += `Sec-WebSocket-Extensions: ${extensions}\r\n`
            socket.write(`${response}\r\n`)
            const reader = new FrameReader()
            socket.on('data', (chunk: Buffer) => reader.push(chunk))
            socket.once('close', () => reader.frames.fail(new Error('the client closed the connection')))
            if (rest.length > 0) reader.push(rest)
            this.connections.push({ socket, reader, request: head })
          },
          () => socket.destroy(),
        )
      }),
    )
  }

  static async start(extensions: string | undefined): Promise<RawServer> {
    const raw = new RawServer(extensions)
    raw.server.listen(0, HOST)
    await withTimeout(once(raw.server, 'listening'), 5000, 'raw server listening')
    raw.port = (raw.server.address() as net.AddressInfo).port
    return raw
  }

  get url(): string {
    return `ws://${HOST}:${this.port}/`
  }
}

/** A frame a Connection wrote: its first byte (FIN, RSV, opcode) and its unmasked payload. */
export interface WrittenFrame {
  first: number
  payload: Buffer
}

export function recordingHandler(): {
  handler: ConnectionHandler
  frames: WrittenFrame[]
  internalErrors: unknown[]
} {
  const frames: WrittenFrame[] = []
  const internalErrors: unknown[] = []
  const handler: ConnectionHandler = {
    write(header, payload) {
      const bytes = Buffer.concat([header, payload ?? new Uint8Array(0)])
      const length = bytes[1]! & 0x7f
      const offset = length === 126 ? 4 : length === 127 ? 10 : 2
      frames.push({ first: bytes[0]!, payload: bytes.subarray(offset) })
    },
    closeTransport() {},
    message() {},
    ping() {},
    pong() {},
    closeReceived() {},
    protocolError() {},
    internalError(error) {
      internalErrors.push(error)
    },
  }
  return { handler, frames, internalErrors }
}
