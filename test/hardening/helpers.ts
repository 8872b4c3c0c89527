/**
 * Shared tools for the hardening suite: hostile raw peers (hand-built HTTP heads and frames on
 * node:net sockets), well-behaved "witness" clients that must keep working while a hostile peer
 * does its worst, and guards for unhandled rejections, heap growth and leaked handles or timers.
 *
 * Everything here is bounded: every wait has a timeout, every socket is destroyed by its owner.
 */
import assert from 'node:assert/strict'
import { createHook } from 'node:async_hooks'
import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { after, afterEach, before } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import {
  type ServerHandlers,
  type ServerWebSocket,
  WebSocket,
  type WebSocketOptions,
} from '../../src/index.js'
import { Opcode } from '../../src/protocol/index.js'
import { clientFrame, closePayload, type FrameSpec, type WireFrame } from '../support/frames.js'
import { type RawServer, rawServer } from '../support/net.js'
import { type HttpHead, RawWebSocket } from '../support/raw-websocket.js'
import { sleep, waitUntil, withTimeout } from '../support/timing.js'

export { Opcode }

export const HOST = '127.0.0.1'
/** The sample key of RFC 6455 1.3. */
export const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
export const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
export const MiB = 1024 * 1024

// ------------------------------------------------------------------ timing

/** The suite's name for the shared `waitUntil` (same arguments, `describe` included). */
export { sleep, waitUntil as waitFor, withTimeout }

// ------------------------------------------------------------------ HTTP heads

export interface UpgradeRequestOptions {
  method?: string
  path?: string
  /** The version part of the request line; '' leaves it out entirely. */
  httpVersion?: string
  /** null leaves the header out. */
  host?: string | null
  /** null leaves the header out; an array sends the header once per value. */
  key?: string | string[] | null
  version?: string | null
  upgrade?: string | null
  connection?: string | null
  origin?: string
  /** More header lines, already formatted ("Name: value"). */
  extra?: string[]
}

/** A hand-built opening handshake request. */
export function upgradeRequest(options: UpgradeRequestOptions = {}): string {
  const method = options.method ?? 'GET'
  const path = options.path ?? '/'
  const httpVersion = options.httpVersion ?? 'HTTP/1.1'
  const lines = [httpVersion === '' ? `${method} ${path}` : `${method} ${path} ${httpVersion}`]
  const host = options.host === undefined ? HOST : options.host
  if (host !== null) lines.push(`Host: ${host}`)
  const upgrade = options.upgrade === undefined ? 'websocket' : options.upgrade
  if (upgrade !== null) lines.push(`Upgrade: ${upgrade}`)
  const connection = options.connection === undefined ? 'Upgrade' : options.connection
  if (connection !== null) lines.push(`Connection: ${connection}`)
  const key = options.key === undefined ? KEY : options.key
  if (key !== null)
    for (const value of Array.isArray(key) ? key : [key]) lines.push(`Sec-WebSocket-Key: ${value}`)
  const version = options.version === undefined ? '13' : options.version
  if (version !== null) lines.push(`Sec-WebSocket-Version: ${version}`)
  if (options.origin !== undefined) lines.push(`Origin: ${options.origin}`)
  lines.push(...(options.extra ?? []))
  return `${lines.join('\r\n')}\r\n\r\n`
}

export interface HttpReply {
  /** Everything the server sent, as latin1 text. */
  raw: string
  statusLine: string
  status: number
  /** Lower-case names. */
  headers: Map<string, string[]>
  body: string
  /** The server ended (FIN) or closed the connection. */
  serverClosed: boolean
  /** ms from the request to the server's FIN/close. */
  elapsed: number
}

export function parseReply(raw: string, serverClosed: boolean, elapsed: number): HttpReply {
  const end = raw.indexOf('\r\n\r\n')
  const head = end === -1 ? raw : raw.slice(0, end)
  const [statusLine = '', ...lines] = head.split('\r\n')
  const headers = new Map<string, string[]>()
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const list = headers.get(name) ?? []
    list.push(line.slice(colon + 1).trim())
    headers.set(name, list)
  }
  return {
    raw,
    statusLine,
    status: Number(statusLine.split(' ')[1]),
    headers,
    body: end === -1 ? '' : raw.slice(end + 4),
    serverClosed,
    elapsed,
  }
}

export interface RawHttpOptions {
  /** Give up (and fail) after this many ms without the server closing. Default 3000. */
  timeout?: number
  localAddress?: string
  /** Resolve as soon as the reply so far satisfies this (for replies on kept-alive connections). */
  until?: (raw: string) => boolean
  /** Send the request in pieces, with this many ms between them. */
  pieces?: (string | Buffer)[]
  pieceDelay?: number
}

/**
 * Sends a request on a raw socket and collects the reply until the server ends the connection
 * (a refused handshake must end it). Fails if the server has not ended it within the timeout.
 */
export function rawHttp(
  port: number,
  request: string | Buffer,
  options: RawHttpOptions = {},
): Promise<HttpReply> {
  const timeout = options.timeout ?? 3000
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = connect({ port, host: HOST, localAddress: options.localAddress })
    const chunks: Buffer[] = []
    let done = false
    const finish = (error?: Error): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      if (error !== undefined) reject(error)
      else resolve(parseReply(Buffer.concat(chunks).toString('latin1'), true, Date.now() - started))
    }
    const timer = setTimeout(() => {
      const partial = Buffer.concat(chunks).toString('latin1')
      finish(new Error(`Server did not close within ${timeout} ms; received ${JSON.stringify(partial)}`))
    }, timeout)
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      if (options.until?.(Buffer.concat(chunks).toString('latin1'))) {
        done = true
        clearTimeout(timer)
        socket.destroy()
        resolve(parseReply(Buffer.concat(chunks).toString('latin1'), false, Date.now() - started))
      }
    })
    socket.on('end', () => finish())
    socket.on('close', () => finish())
    // A reset after the server wrote its reply still counts as the server closing.
    socket.on('error', () => finish())
    socket.write(request)
    if (options.pieces !== undefined) {
      let i = 0
      const next = (): void => {
        if (done || i >= options.pieces!.length) return
        socket.write(options.pieces![i++]!)
        setTimeout(next, options.pieceDelay ?? 10)
      }
      setTimeout(next, options.pieceDelay ?? 10)
    }
  })
}

// ------------------------------------------------------------------ frames

export { clientFrame, closePayload, type FrameSpec }

/** A frame as the server sent it (servers do not mask). */
export type ServerFrame = WireFrame

let roundTrips = 0

export interface CloseResult {
  code: number
  reason: string
  /** ms from when waiting began to the close frame. */
  elapsed: number
  /** The frames the server sent before its close frame. */
  before: ServerFrame[]
}

/**
 * A hostile (or merely hand-driven) WebSocket peer on a raw socket (test/support/raw-websocket.ts):
 * it completes the opening handshake itself, then sends whatever bytes the test wants and collects
 * every frame the server sends in `frames`.
 */
export class RawPeer extends RawWebSocket {
  /** Connects and completes the handshake (asserting the 101 and the accept key). */
  static async connect(
    port: number,
    options: { path?: string; localAddress?: string; request?: string; timeout?: number } = {},
  ): Promise<RawPeer> {
    const timeout = options.timeout ?? 3000
    const peer = new RawPeer(
      await RawWebSocket.dialSocket({
        port,
        localAddress: options.localAddress,
        allowHalfOpen: true,
        timeout,
      }),
    )
    peer.write(options.request ?? upgradeRequest({ path: options.path }))
    let reply: HttpHead
    try {
      reply = await peer.readHead(timeout)
    } catch (error) {
      peer.destroy()
      throw new Error(`Raw peer handshake: ${(error as Error).message}`)
    }
    if (reply.status !== 101 || reply.headers['sec-websocket-accept'] !== ACCEPT) {
      peer.destroy()
      throw new Error(`Handshake refused: ${reply.statusLine}`)
    }
    peer.collectFrames()
    return peer
  }

  /** True once the server sent FIN. */
  get serverEnded(): boolean {
    return this.gotEnd
  }

  send(opcode: number, payload: Uint8Array | string = '', spec: FrameSpec = {}): boolean {
    return this.sendFrame(opcode, payload, spec)
  }

  /** Waits until `predicate` holds, re-checked on every chunk and on close. */
  async until(predicate: () => boolean, ms: number, label: string): Promise<void> {
    await this.waitFor(() => (predicate() ? true : undefined), ms, label)
  }

  /** Waits for the server's close frame; fails if the socket closes without one. */
  async expectCloseFrame(ms = 2000): Promise<CloseResult> {
    const started = Date.now()
    const find = (): number => this.frames.findIndex((f) => f.opcode === Opcode.Close)
    await this.until(() => find() !== -1 || this.socket.closed, ms, 'the server close frame')
    const index = find()
    assert.notEqual(index, -1, `The server closed TCP without a close frame; frames: ${this.describe()}`)
    const frame = this.frames[index]!
    assert.ok(frame.payload.length >= 2, 'The close frame must carry a status code')
    assert.equal(frame.masked, false, 'Server frames must not be masked')
    return {
      code: frame.payload.readUInt16BE(0),
      reason: frame.payload.subarray(2).toString('utf8'),
      elapsed: Date.now() - started,
      before: this.frames.slice(0, index),
    }
  }

  /** Waits until the server has closed the TCP connection (FIN or full close). */
  async expectTcpClosed(ms = 2000): Promise<void> {
    await this.until(() => this.serverEnded || this.socket.closed, ms, 'the server to close TCP')
  }

  /**
   * The full sequence for a protocol violation: exactly one frame, a close frame with `code`,
   * then the TCP connection closed by the server.
   */
  async expectFailure(code: number, ms = 2000): Promise<CloseResult> {
    const result = await this.expectCloseFrame(ms)
    assert.equal(result.code, code, `close code (reason: ${JSON.stringify(result.reason)})`)
    assert.deepEqual(
      result.before.map((f) => f.opcode),
      [],
      'the server must send nothing before its close frame',
    )
    assert.ok(Buffer.byteLength(result.reason) <= 123)
    await this.expectTcpClosed(ms)
    return result
  }

  /**
   * Sends a ping and waits for its pong: the server has then read and handled everything written
   * before the ping (RFC 6455 5.5.2 answers in order). The pong is taken out of `frames`; any other
   * frame the server sent stays there for the test. Ends early if the server closes the connection.
   */
  async roundTrip(ms = 2000): Promise<void> {
    const token = `round-trip-${++roundTrips}`
    const isAnswer = (f: ServerFrame): boolean => f.opcode === Opcode.Pong && f.payload.toString() === token
    this.send(Opcode.Ping, token)
    await this.until(() => this.frames.some(isAnswer) || this.socket.closed, ms, `the pong to ${token}`)
    const index = this.frames.findIndex(isAnswer)
    if (index !== -1) this.frames.splice(index, 1)
  }
}

export function acceptFor(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
}

// ------------------------------------------------------------------ server handlers

/** What a test can read about what happened on the server. */
export interface ServerLog {
  errors: unknown[]
  closes: { code: number; reason: string; url: string }[]
  opened: number
}

/**
 * Handlers for an echo server: every message back as it came (witnesses rely on it), every
 * error recorded (so that none is printed, and tests can look at them).
 */
export function echoHandlers<T = undefined>(log: ServerLog): ServerHandlers<T> {
  return {
    open() {
      log.opened++
    },
    message(ws: ServerWebSocket<T>, data: string | Buffer) {
      ws.send(data)
    },
    close(ws: ServerWebSocket<T>, code: number, reason: string) {
      log.closes.push({ code, reason, url: ws.url })
    },
    error(error: unknown) {
      log.errors.push(error)
    },
  }
}

export function newLog(): ServerLog {
  return { errors: [], closes: [], opened: 0 }
}

// ------------------------------------------------------------------ witnesses

/**
 * A well-behaved Rally client that sends sequence-numbered text messages on a timer and checks
 * that the echo server returns each one, in order. A hostile peer on the same server must not
 * make it lose, reorder or wait forever for a message.
 */
class Witness {
  readonly ws: WebSocket
  readonly id: number
  sent = 0
  received = 0
  readonly problems: string[] = []
  closeCode: number | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(url: string, id: number, options: WebSocketOptions = {}) {
    this.id = id
    this.ws = new WebSocket(url, [], { perMessageDeflate: false, ...options })
    this.ws.onmessage = (event) => {
      const text = String((event as MessageEvent).data)
      const expected = `w${this.id}:${this.received}`
      if (text !== expected && this.problems.length < 5)
        this.problems.push(`got ${JSON.stringify(text.slice(0, 40))}, expected ${expected}`)
      this.received++
    }
    this.ws.onclose = (event) => {
      this.closeCode = (event as unknown as { code: number }).code
      this.stop()
    }
    this.ws.onerror = (event) => {
      if (this.problems.length < 5)
        this.problems.push(`error event: ${(event as unknown as { message: string }).message}`)
    }
  }

  opened(ms: number): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return Promise.resolve()
    return withTimeout(
      new Promise<void>((resolve, reject) => {
        this.ws.addEventListener('open', () => resolve(), { once: true })
        this.ws.addEventListener(
          'close',
          () => reject(new Error(`witness ${this.id} closed before opening`)),
          {
            once: true,
          },
        )
      }),
      ms,
      `witness ${this.id} open`,
    )
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (this.ws.readyState !== WebSocket.OPEN) return
      this.ws.send(`w${this.id}:${this.sent++}`)
    }, intervalMs)
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}

export class Witnesses {
  readonly list: Witness[]
  private constructor(list: Witness[]) {
    this.list = list
  }

  /** Opens `count` witnesses to `url` and starts their traffic. */
  static async start(
    url: string,
    count = 2,
    intervalMs = 10,
    options: WebSocketOptions = {},
  ): Promise<Witnesses> {
    const list = Array.from({ length: count }, (_, i) => new Witness(url, i, options))
    try {
      await Promise.all(list.map((w) => w.opened(3000)))
    } catch (error) {
      for (const w of list) w.ws.terminate()
      throw error
    }
    for (const w of list) w.start(intervalMs)
    const witnesses = new Witnesses(list)
    // Traffic flows before any hostile peer arrives.
    await waitUntil(() => list.every((w) => w.received > 0), 3000, 'first witness echoes')
    return witnesses
  }

  /**
   * Checks that every witness is still open, has had every message echoed so far, in order, and
   * that traffic did flow (at least `minMessages` each since the start).
   */
  async checkpoint(label = 'checkpoint', minMessages = 1, ms = 5000): Promise<void> {
    const snapshot = this.list.map((w) => w.sent)
    await waitUntil(
      () => this.list.every((w, i) => w.received >= snapshot[i]! || w.closeCode !== undefined),
      ms,
      `${label}: witnesses receive every echo`,
      () => this.list.map((w) => ({ sent: w.sent, received: w.received, closeCode: w.closeCode })),
    )
    for (const w of this.list) {
      assert.deepEqual(w.problems, [], `${label}: witness ${w.id} saw problems`)
      assert.equal(w.closeCode, undefined, `${label}: witness ${w.id} was closed (${w.closeCode})`)
      assert.equal(w.ws.readyState, WebSocket.OPEN, `${label}: witness ${w.id} is open`)
      assert.ok(w.sent >= minMessages, `${label}: witness ${w.id} sent only ${w.sent} messages`)
    }
  }

  /** Stops the traffic, checks that nothing was lost, closes cleanly. */
  async stop(label = 'final'): Promise<void> {
    for (const w of this.list) w.stop()
    try {
      await this.checkpoint(label)
      for (const w of this.list) assert.equal(w.received, w.sent, `${label}: witness ${w.id} got every echo`)
    } finally {
      await this.close()
    }
  }

  /** Closes the witnesses (1000) and waits for their close events; bounded. */
  async close(): Promise<void> {
    const closing = this.list.map((w) =>
      w.closeCode !== undefined || w.ws.readyState === WebSocket.CLOSED
        ? Promise.resolve()
        : new Promise<void>((resolve) => w.ws.addEventListener('close', () => resolve(), { once: true })),
    )
    for (const w of this.list) {
      w.stop()
      if (w.ws.readyState === WebSocket.OPEN) w.ws.close(1000)
    }
    try {
      await withTimeout(Promise.all(closing), 3000, 'witnesses close')
    } catch (error) {
      for (const w of this.list) w.ws.terminate()
      throw error
    }
  }
}

// ------------------------------------------------------------------ guards

/** A gc function: `global.gc` under --expose-gc, else one obtained through V8 flags, else none. */
export const gc: (() => void) | undefined = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === 'function') return exposed
  try {
    setFlagsFromString('--expose-gc')
    const fn = runInNewContext('gc') as unknown
    if (typeof fn === 'function') return fn as () => void
  } catch {
    // Not available: the comparisons below use generous margins instead.
  }
  return undefined
})()

/** Heap plus ArrayBuffer memory (Buffers live outside the JS heap), after a gc when possible. */
export async function memoryNow(): Promise<number> {
  if (gc !== undefined) {
    gc()
    await sleep(10)
    gc()
  }
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

/** Memory now, without forcing a collection (for sampling during a flood). */
export function memorySample(): number {
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

const rejections: unknown[] = []
let guardsInstalled = false

/**
 * Per test file: fails a test during which a promise rejection went unhandled, and fails the
 * file if heap + ArrayBuffer memory grew by more than `heapMarginMiB` between its start and its
 * end (after every server and client is closed).
 */
export function installGuards(heapMarginMiB = 64): void {
  if (guardsInstalled) return
  guardsInstalled = true
  const onRejection = (reason: unknown): void => {
    rejections.push(reason)
  }
  let baseline = 0
  before(async () => {
    process.on('unhandledRejection', onRejection)
    baseline = await memoryNow()
  })
  afterEach(() => {
    const seen = rejections.splice(0)
    assert.deepEqual(
      seen.map((r) => (r instanceof Error ? `${r.name}: ${r.message}` : String(r))),
      [],
      'no promise rejection may go unhandled',
    )
  })
  after(async () => {
    process.removeListener('unhandledRejection', onRejection)
    const grown = (await memoryNow()) - baseline
    assert.ok(
      grown < heapMarginMiB * MiB,
      `heap + ArrayBuffers grew by ${(grown / MiB).toFixed(1)} MiB over the file (limit ${heapMarginMiB} MiB, gc ${gc ? 'forced' : 'not available'})`,
    )
  })
}

/** Counts of the resource types we watch for leaks. */
export function activeCounts(): { Timeout: number; TCPSocketWrap: number; TCPServerWrap: number } {
  const counts = { Timeout: 0, TCPSocketWrap: 0, TCPServerWrap: 0 }
  for (const name of process.getActiveResourcesInfo()) {
    if (name === 'Timeout' || name === 'TCPSocketWrap' || name === 'TCPServerWrap') counts[name]++
  }
  return counts
}

/**
 * Tracks every timer created while active, ref'd or not (getActiveResourcesInfo does not list
 * unref'd timers): `live()` lists those created since `start` that are neither fired nor cleared.
 */
export function trackTimers(): { live(): string[]; stop(): void } {
  const live = new Map<
    number,
    { _idleTimeout?: number; _onTimeout?: { name?: string }; _repeat?: unknown; _destroyed?: boolean }
  >()
  const hook = createHook({
    init(asyncId, type, _trigger, resource) {
      if (type === 'Timeout') live.set(asyncId, resource as never)
    },
    destroy(asyncId) {
      live.delete(asyncId)
    },
  })
  hook.enable()
  return {
    live: () =>
      [...live.values()]
        // A timer that fired (and was not re-armed) or was cleared is destroyed, even if the
        // destroy hook has not run yet.
        .filter((t) => t._destroyed !== true && t._idleTimeout !== undefined && t._idleTimeout >= 0)
        .map(
          (t) =>
            `${t._onTimeout?.name || 'anonymous'}(${t._idleTimeout} ms${t._repeat ? ', repeating' : ''})`,
        ),
    stop: () => hook.disable(),
  }
}

// ------------------------------------------------------------------ raw servers

export { type RawServer, rawServer }

/**
 * Reads an opening handshake request on `socket` and answers 101. Bytes the client sends after
 * it go to `onData` (raw, unparsed); without `onData` they are read and dropped.
 */
export function acceptHandshake(socket: Socket, onData?: (bytes: Buffer) => void): void {
  let head = ''
  const onHead = (chunk: Buffer): void => {
    head += chunk.toString('latin1')
    const end = head.indexOf('\r\n\r\n')
    if (end === -1) return
    socket.removeListener('data', onHead)
    const key = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? ''
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
    )
    if (onData !== undefined) {
      const rest = Buffer.from(head.slice(end + 4), 'latin1')
      if (rest.length > 0) onData(rest)
      socket.on('data', onData)
    } else {
      socket.resume()
    }
  }
  socket.on('data', onHead)
}

/** Waits for a WHATWG WebSocket's close event; bounded. */
export function closeEventOf(
  ws: WebSocket,
  ms: number,
): Promise<{ code: number; reason: string; wasClean: boolean; at: number }> {
  return withTimeout(
    new Promise((resolve) => {
      ws.addEventListener(
        'close',
        (event) => {
          const e = event as unknown as { code: number; reason: string; wasClean: boolean }
          resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean, at: Date.now() })
        },
        { once: true },
      )
    }),
    ms,
    'close event',
  )
}

/** Waits for a WHATWG WebSocket's open event; bounded. Fails if it closes first. */
export function openEventOf(ws: WebSocket, ms: number): Promise<void> {
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true })
      ws.addEventListener('close', () => reject(new Error('closed before opening')), { once: true })
    }),
    ms,
    'open event',
  )
}
