/**
 * A WebSocket client written by hand on a node:net socket, for every suite that must choose each
 * byte it sends (hostile heads, bad frames, split writes) and read each byte the server answers.
 *
 * It keeps the bytes received and not yet read in `buffer`. Tests read them in order
 * (`readHead`, then `readFrame`), or, after `collectFrames()`, find every frame the server sent
 * in `frames` and wait on a predicate over them (`waitFor`). Every wait is bounded, wakes on each
 * chunk and on close, and says what it was waiting for when it gives up.
 *
 * The suites' own peers (RawClient in node/, topics/ and deflate/, RawPeer in hardening/) extend
 * this class with what only their suite needs.
 */
import { Buffer } from 'node:buffer'
import { connect, type Socket } from 'node:net'
import { clientFrame, type FrameSpec, parseFrame, type WireFrame } from './frames.js'
import { HOST } from './net.js'

/** The sample key of RFC 6455 1.3 and the Sec-WebSocket-Accept a server must answer to it. */
export const SAMPLE_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
export const SAMPLE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='

/** An HTTP response as a raw client read it. */
export interface HttpHead {
  statusLine: string
  status: number
  /** Lower-case names; a repeated field's values joined with ", ". */
  headers: Record<string, string>
  /** The body (Content-Length or chunked); empty for a 101, whose next bytes are frames. */
  body: string
}

/** A frame the server sent, with its bytes exactly as they came (to compare two sockets' frames). */
export interface ReceivedFrame extends WireFrame {
  bytes: Buffer
}

export interface DialOptions {
  port: number
  localAddress?: string
  /** Keep the socket writable after the server's FIN (to see what a server does with a half-open peer). */
  allowHalfOpen?: boolean
  /** Bound on the TCP connect, ms. Default 5000. */
  timeout?: number
}

export class RawWebSocket {
  readonly socket: Socket
  /** Bytes received and not yet consumed by `readHead` / `readFrame` (or collected as frames). */
  buffer: Buffer = Buffer.alloc(0)
  /** Every frame received since `collectFrames()`, in order. */
  readonly frames: ReceivedFrame[] = []
  /** The server sent FIN. */
  gotEnd = false
  /** The socket is closed (by either side). */
  closed = false
  /** The socket's error (ECONNRESET...), if any: expected from a server defending itself. */
  error: Error | undefined
  /** Bytes received since `collectFrames()` (those already buffered then included): the frames' bytes. */
  bytesCollected = 0
  /** Reads (`data` events) since `collectFrames()`: how the server's bytes were batched. */
  readsWhileCollecting = 0
  /** Collected frames keep their bytes only while this is true (false: a flood is only counted). */
  keepFrames = true
  private collecting = false
  private readonly waiters = new Set<() => void>()

  protected constructor(socket: Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      if (this.collecting) {
        this.bytesCollected += chunk.length
        this.readsWhileCollecting++
        if (!this.keepFrames) {
          this.wake()
          return
        }
      }
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
      if (this.collecting) this.collect()
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

  /** A TCP connection to 127.0.0.1, nothing written yet. */
  protected static dialSocket(options: DialOptions): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect({
        host: HOST,
        port: options.port,
        localAddress: options.localAddress,
        allowHalfOpen: options.allowHalfOpen ?? false,
      })
      socket.setNoDelay(true)
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`raw connect to ${options.port} timed out`))
      }, options.timeout ?? 5000)
      socket.once('error', (error) => {
        clearTimeout(timer)
        reject(error)
      })
      socket.once('connect', () => {
        clearTimeout(timer)
        resolve(socket)
      })
    })
  }

  /** Writes the chunks in one write (one TCP segment on loopback for small sizes). */
  write(...chunks: (Uint8Array | string)[]): boolean {
    const bytes =
      chunks.length === 1 && typeof chunks[0] !== 'string'
        ? chunks[0]!
        : Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c)))
    return this.socket.write(bytes)
  }

  /** Sends one masked client frame (or an unmasked one with `{ mask: false }`, to break the rule). */
  sendFrame(opcode: number, payload: Uint8Array | string = '', spec: FrameSpec = {}): boolean {
    return this.socket.write(clientFrame(opcode, payload, spec))
  }

  destroy(): void {
    this.socket.destroy()
  }

  /**
   * Resolves with `check()`'s first value other than undefined, re-checked now, on every chunk,
   * on FIN and on close; rejects when `check` throws, when the socket closes first (unless
   * `check` accepts the closed state), or after `ms`.
   */
  waitFor<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
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
          reject(new Error(`connection closed while waiting for ${what} (${this.describe()})`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out after ${ms} ms waiting for ${what} (${this.describe()})`))
      }, ms)
      this.waiters.add(attempt)
      attempt()
    })
  }

  /** Reads an HTTP response head and its body (Content-Length or chunked). */
  readHead(ms = 5000): Promise<HttpHead> {
    return this.waitFor(
      () => {
        const parsed = parseHttpResponse(this.buffer)
        if (parsed === undefined) return undefined
        this.buffer = this.buffer.subarray(parsed.size)
        return parsed.head
      },
      ms,
      'an HTTP response',
    )
  }

  /** Reads the next frame (not for use after `collectFrames()`). */
  readFrame(ms = 5000): Promise<WireFrame> {
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

  /** From now on, every frame received is appended to `frames` (those already buffered first). */
  collectFrames(): void {
    this.collecting = true
    this.bytesCollected = this.buffer.length
    this.collect()
  }

  /** Waits for the TCP connection to close. */
  async waitForClose(ms = 5000): Promise<void> {
    await this.waitFor(() => (this.closed ? true : undefined), ms, 'the TCP close')
  }

  /** What was received so far, for failure messages. */
  describe(): string {
    const frames = this.frames.map((f) => `${f.opcode}:${f.payload.length}`).join(',')
    return `${this.buffer.length} bytes unread, frames [${frames}]${this.gotEnd ? ', FIN' : ''}`
  }

  private collect(): void {
    for (let next = parseFrame(this.buffer); next !== undefined; next = parseFrame(this.buffer)) {
      this.frames.push({ ...next.frame, bytes: Buffer.from(this.buffer.subarray(0, next.size)) })
      this.buffer = this.buffer.subarray(next.size)
    }
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter()
  }
}

/** A complete HTTP response at the start of `buffer` and how many bytes it took, or undefined. */
export function parseHttpResponse(buffer: Buffer): { head: HttpHead; size: number } | undefined {
  const end = buffer.indexOf('\r\n\r\n')
  if (end === -1) return undefined
  const lines = buffer.subarray(0, end).toString('latin1').split('\r\n')
  const statusLine = lines[0]!
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  const status = Number(statusLine.split(' ')[1])
  if (headers['transfer-encoding'] === 'chunked') {
    const chunked = decodeChunked(buffer, end + 4)
    if (chunked === undefined) return undefined
    return { head: { statusLine, status, headers, body: chunked.body.toString('utf8') }, size: chunked.total }
  }
  // A 101 has no body: the bytes after its head are frames.
  const bodyLength = status === 101 ? 0 : Number(headers['content-length'] ?? 0)
  const size = end + 4 + bodyLength
  if (buffer.length < size) return undefined
  return {
    head: { statusLine, status, headers, body: buffer.subarray(end + 4, size).toString('utf8') },
    size,
  }
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
