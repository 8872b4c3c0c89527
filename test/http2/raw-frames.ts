/**
 * A minimal HTTP/2 client written for the tests, frame by frame (RFC 9113 3.4, 4.1, 6), with HPACK
 * literal fields only (RFC 7541 6.2.2): it can send what node:http2's client refuses or repairs
 * (a CONNECT without :authority or :path), and reports the answer to stream 1 as the raw first
 * byte of the response's header block or the RST_STREAM code. RawH2Client keeps a connection for
 * flow-control tests: it gives window back only when and where a test says, and counts the DATA
 * bytes each stream receives.
 */
import { type TLSSocket, connect as tlsConnect } from 'node:tls'
import { withTimeout } from '../support/timing.js'

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

export function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9)
  header.writeUIntBE(payload.length, 0, 3)
  header[3] = type
  header[4] = flags
  header.writeUInt32BE(streamId, 5)
  return Buffer.concat([header, payload])
}

/** HPACK "literal header field without indexing — new name" (RFC 7541 6.2.2), short strings. */
export function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name)
  const v = Buffer.from(value)
  if (n.length > 126 || v.length > 126) throw new RangeError('short fields only')
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v])
}

export type RawAnswer = { headerBlockFirstByte: number } | { rstCode: number } | { goaway: number }

/** Opens a TLS connection with ALPN h2, sends `fields` as stream 1's HEADERS, reports the answer. */
export function rawRequest(port: number, ca: Buffer, fields: [string, string][]): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      servername: 'localhost',
      ALPNProtocols: ['h2'],
    })
    let buffered = Buffer.alloc(0)
    const finish = (answer: RawAnswer) => {
      socket.destroy()
      resolve(answer)
    }
    socket.once('error', reject)
    socket.once('secureConnect', () => {
      const block = Buffer.concat(fields.map(([name, value]) => literal(name, value)))
      socket.write(
        Buffer.concat([
          PREFACE,
          frame(0x4, 0, 0, Buffer.alloc(0)),
          // HEADERS, END_HEADERS (0x4), no END_STREAM: a CONNECT stream stays open.
          frame(0x1, 0x4, 1, block),
        ]),
      )
    })
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3)
        if (buffered.length < 9 + length) return
        const type = buffered[3]!
        const flags = buffered[4]!
        const streamId = buffered.readUInt32BE(5) & 0x7fffffff
        const payload = buffered.subarray(9, 9 + length)
        buffered = buffered.subarray(9 + length)
        if (type === 0x4 && (flags & 0x1) === 0) socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0)))
        else if (type === 0x1 && streamId === 1) {
          // With PADDED or PRIORITY flags the block starts later; nghttp2 sends neither here.
          finish({ headerBlockFirstByte: payload[0]! })
          return
        } else if (type === 0x3 && streamId === 1) {
          finish({ rstCode: payload.readUInt32BE(0) })
          return
        } else if (type === 0x7) {
          finish({ goaway: payload.readUInt32BE(4) })
          return
        }
      }
    })
  })
}

/** Frame types (RFC 9113 6). */
const DATA = 0x0
const HEADERS = 0x1
const RST_STREAM = 0x3
const SETTINGS = 0x4
const PING = 0x6
const GOAWAY = 0x7
const WINDOW_UPDATE = 0x8
const END_STREAM = 0x1
const ACK = 0x1
const END_HEADERS = 0x4

/** What one stream has received. */
export interface RawStream {
  /** First byte of the response's header block (0x88: `:status 200`, HPACK static index 8). */
  headerBlockFirstByte?: number
  /** Every DATA payload byte, in order. */
  data: Buffer
  /** Give the stream's window back as its DATA arrives. */
  credit: boolean
  ended: boolean
  rstCode?: number
}

/**
 * One HTTP/2 connection under the test's control. The connection window is given back for every
 * DATA frame received unless `creditConnection` is off (as browsers do: they buffer per stream),
 * so that a stream stalls on its own window only; a stream's window is given back only if its
 * `credit` is set.
 */
export class RawH2Client {
  readonly streams = new Map<number, RawStream>()
  readonly serverSettings = new Map<number, number>()
  goaway: number | undefined
  /** Give the connection's window back for every DATA frame received. Default true. */
  creditConnection = true
  private nextStreamId = 1
  private buffered = Buffer.alloc(0)
  private waiters: (() => void)[] = []
  private pingsAnswered = 0
  private pingsSent = 0

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk))
    socket.on('close', () => this.wake())
  }

  /** Connects, sends the preface and `settings` (id, value pairs), waits for the server's SETTINGS. */
  static async connect(port: number, ca: Buffer, settings: [number, number][] = []): Promise<RawH2Client> {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['h2'] })
    socket.on('error', () => {})
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', () => resolve())
        socket.once('error', reject)
      }),
      20_000,
      'the TLS handshake',
    )
    const client = new RawH2Client(socket)
    const payload = Buffer.alloc(6 * settings.length)
    settings.forEach(([id, value], i) => {
      payload.writeUInt16BE(id, 6 * i)
      payload.writeUInt32BE(value, 6 * i + 2)
    })
    socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, payload)]))
    await client.until(() => client.serverSettings.size > 0, "the server's SETTINGS")
    return client
  }

  /** Sends a HEADERS frame on a new stream; returns its id. */
  request(fields: [string, string][], endStream: boolean, credit = true): number {
    const id = this.nextStreamId
    this.nextStreamId += 2
    this.streams.set(id, { data: Buffer.alloc(0), credit, ended: false })
    const block = Buffer.concat(fields.map(([name, value]) => literal(name, value)))
    this.socket.write(frame(HEADERS, END_HEADERS | (endStream ? END_STREAM : 0), id, block))
    return id
  }

  stream(id: number): RawStream {
    const stream = this.streams.get(id)
    if (stream === undefined) throw new Error(`no stream ${id}`)
    return stream
  }

  sendData(id: number, payload: Buffer, endStream = false): void {
    this.socket.write(frame(DATA, endStream ? END_STREAM : 0, id, payload))
  }

  windowUpdate(id: number, increment: number): void {
    const payload = Buffer.alloc(4)
    payload.writeUInt32BE(increment, 0)
    this.socket.write(frame(WINDOW_UPDATE, 0, id, payload))
  }

  /** A PING round trip: everything the server wrote before answering it has arrived. */
  async ping(): Promise<void> {
    const target = ++this.pingsSent
    this.socket.write(frame(PING, 0, 0, Buffer.alloc(8)))
    await this.until(() => this.pingsAnswered >= target, 'the PING acknowledgement')
  }

  /** Waits for `condition`, checked as frames arrive; `what` (read at the timeout) names it. */
  until(condition: () => boolean, what: string | (() => string), ms = 20_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const label = typeof what === 'string' ? what : what()
        reject(new Error(`timed out after ${ms} ms waiting for ${label}`))
      }, ms)
      const check = () => {
        if (condition()) {
          clearTimeout(timer)
          resolve()
        } else if (this.socket.destroyed) {
          clearTimeout(timer)
          reject(new Error('the connection closed'))
        } else this.waiters.push(check)
      }
      check()
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter()
  }

  private receive(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk])
    while (this.buffered.length >= 9) {
      const length = this.buffered.readUIntBE(0, 3)
      if (this.buffered.length < 9 + length) break
      const type = this.buffered[3]!
      const flags = this.buffered[4]!
      const id = this.buffered.readUInt32BE(5) & 0x7fffffff
      const payload = this.buffered.subarray(9, 9 + length)
      this.buffered = this.buffered.subarray(9 + length)
      this.handle(type, flags, id, payload)
    }
    this.wake()
  }

  private handle(type: number, flags: number, id: number, payload: Buffer): void {
    const stream = this.streams.get(id)
    if (type === SETTINGS && (flags & ACK) === 0) {
      for (let i = 0; i + 6 <= payload.length; i += 6)
        this.serverSettings.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2))
      this.socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)))
    } else if (type === PING && (flags & ACK) !== 0) this.pingsAnswered++
    else if (type === GOAWAY) this.goaway = payload.readUInt32BE(4)
    else if (type === HEADERS && stream !== undefined) {
      // nghttp2 sends neither PADDED nor PRIORITY here: the block starts at once.
      stream.headerBlockFirstByte ??= payload[0]
      if ((flags & END_STREAM) !== 0) stream.ended = true
    } else if (type === DATA && stream !== undefined) {
      stream.data = Buffer.concat([stream.data, payload])
      if (payload.length > 0) {
        if (this.creditConnection) this.windowUpdate(0, payload.length)
        if (stream.credit && (flags & END_STREAM) === 0) this.windowUpdate(id, payload.length)
      }
      if ((flags & END_STREAM) !== 0) stream.ended = true
    } else if (type === RST_STREAM && stream !== undefined) stream.rstCode = payload.readUInt32BE(0)
  }
}
