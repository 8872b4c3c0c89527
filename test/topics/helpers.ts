/**
 * Helpers for the topic tests: bounded waits, a batch of Rally clients, and a raw TCP client
 * that reads the server's frames byte for byte (to compare what two sockets received, or to
 * stop reading altogether).
 */
import { Buffer } from 'node:buffer'
import { connect, type Socket } from 'node:net'
import { constants, createInflateRaw, type InflateRaw, inflateRawSync } from 'node:zlib'
import { WebSocket, type WebSocketOptions } from '../../src/index.js'
import { nextDomEvent } from '../support/events.js'
import { parseFrame } from '../support/frames.js'
import { withTimeout as within } from '../support/timing.js'

export { turn, waitUntil as until } from '../support/timing.js'
export { nextDomEvent, within }

/** A Rally client that keeps every text message it receives. */
export interface Peer {
  ws: WebSocket
  messages: string[]
  closed: boolean
}

/** Opens `count` Rally clients, `batch` at a time (the listen backlog stays short). */
export async function openPeers(
  url: (index: number) => string,
  count: number,
  options: WebSocketOptions = {},
  batch = 100,
): Promise<Peer[]> {
  const peers: Peer[] = []
  for (let start = 0; start < count; start += batch) {
    const opening: Promise<Event>[] = []
    for (let i = start; i < Math.min(count, start + batch); i++) {
      const ws = new WebSocket(url(i), undefined, { perMessageDeflate: false, ...options })
      const peer: Peer = { ws, messages: [], closed: false }
      ws.addEventListener('message', (event) => peer.messages.push(String((event as MessageEvent).data)))
      ws.addEventListener('close', () => {
        peer.closed = true
      })
      peers.push(peer)
      opening.push(nextDomEvent(ws, 'open', 10_000))
    }
    await Promise.all(opening)
  }
  return peers
}

/** A frame as the server sent it: its exact bytes and its parts. */
export interface RawFrame {
  fin: boolean
  rsv1: boolean
  opcode: number
  payload: Buffer
  bytes: Buffer
}

/**
 * A WebSocket client on a bare TCP socket: sends the handshake with the given extra header
 * lines, and parses (unmasked) server frames as they come.
 */
export class RawClient {
  readonly socket: Socket
  head = ''
  readonly frames: RawFrame[] = []
  /** Reads from the socket after the handshake: how the bytes were batched on the way. */
  chunksAfterHead = 0
  private buffer: Buffer = Buffer.alloc(0)
  private headDone = false
  private waitingHead: ((head: string) => void) | undefined

  private constructor(socket: Socket) {
    this.socket = socket
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
  }

  static async connect(
    port: number,
    path: string,
    extraHeaders: string[] = [],
    ms = 5000,
  ): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1')
    const client = new RawClient(socket)
    const head = new Promise<string>((resolve) => {
      client.waitingHead = resolve
    })
    socket.write(
      [
        `GET ${path} HTTP/1.1`,
        'Host: 127.0.0.1',
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        ...extraHeaders,
        '',
        '',
      ].join('\r\n'),
    )
    try {
      await within(head, ms, `the 101 for raw client on ${path}`)
    } catch (error) {
      socket.destroy()
      throw error
    }
    return client
  }

  /** Text of the data frames received so far (server frames are unmasked). */
  get bytesReceived(): number {
    return this.frames.reduce((sum, frame) => sum + frame.bytes.length, 0)
  }

  destroy(): void {
    this.socket.destroy()
  }

  private onData(chunk: Buffer): void {
    if (this.headDone) this.chunksAfterHead++
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    if (!this.headDone) {
      const end = this.buffer.indexOf('\r\n\r\n')
      if (end === -1) return
      this.head = this.buffer.subarray(0, end).toString('latin1')
      this.buffer = this.buffer.subarray(end + 4)
      this.headDone = true
      this.waitingHead?.(this.head)
    }
    this.parseFrames()
  }

  private parseFrames(): void {
    for (let next = parseFrame(this.buffer); next !== undefined; next = parseFrame(this.buffer)) {
      const { fin, rsv, opcode, payload } = next.frame
      // The frame's bytes as received, to compare what two sockets were sent.
      const bytes = Buffer.from(this.buffer.subarray(0, next.size))
      this.frames.push({ fin, rsv1: (rsv & 0x40) !== 0, opcode, payload, bytes })
      this.buffer = this.buffer.subarray(next.size)
    }
  }
}

/** A deterministic PRNG (mulberry32), so that a failure can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** RFC 7692 7.2.2: the receiver appends 00 00 FF FF before inflating. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

/**
 * Decodes the data frames a raw client received, in the order they arrived: compressed ones
 * (RSV1) inflated on their own, or — with context takeover — through one inflater kept across
 * messages, as a peer must. Expects unfragmented messages.
 */
export async function decodeFrames(frames: readonly RawFrame[], takeover: boolean): Promise<string[]> {
  const inflater = takeover ? createInflateRaw() : undefined
  const messages: string[] = []
  try {
    for (const frame of frames) {
      if (frame.opcode !== 0x1 && frame.opcode !== 0x2) continue
      if (!frame.fin) throw new Error('decodeFrames expects unfragmented messages')
      if (!frame.rsv1) messages.push(frame.payload.toString('utf8'))
      else if (inflater === undefined) messages.push(inflateMessage(frame.payload, 15))
      else
        messages.push((await inflateThrough(inflater, Buffer.concat([frame.payload, TAIL]))).toString('utf8'))
    }
  } finally {
    inflater?.close()
  }
  return messages
}

function inflateThrough(inflater: InflateRaw, input: Buffer): Promise<Buffer> {
  return within(
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      const onData = (chunk: Buffer): void => void chunks.push(chunk)
      inflater.on('data', onData)
      inflater.once('error', reject)
      inflater.write(input)
      inflater.flush(() => {
        inflater.removeListener('data', onData)
        inflater.removeListener('error', reject)
        resolve(Buffer.concat(chunks))
      })
    }),
    5000,
    'zlib to inflate a message',
  )
}

/** Inflates one message compressed without context takeover, with a `windowBits` window. */
export function inflateMessage(payload: Buffer, windowBits: number): string {
  return inflateRawSync(Buffer.concat([payload, TAIL]), {
    windowBits,
    finishFlush: constants.Z_SYNC_FLUSH,
  }).toString('utf8')
}
