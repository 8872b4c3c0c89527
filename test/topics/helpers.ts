/**
 * Helpers for the topic tests: bounded waits, a batch of Rally clients, and a raw TCP client
 * that reads the server's frames byte for byte (to compare what two sockets received, or to
 * stop reading altogether).
 */
import { Buffer } from 'node:buffer'
import { constants, createInflateRaw, type InflateRaw, inflateRawSync } from 'node:zlib'
import { WebSocket, type WebSocketOptions } from '../../src/index.js'
import { nextDomEvent } from '../support/events.js'
import { RawWebSocket, type ReceivedFrame, SAMPLE_KEY } from '../support/raw-websocket.js'
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
export type RawFrame = ReceivedFrame

/** RSV1 on a data frame: compressed (RFC 7692 6). */
export function isCompressed(frame: RawFrame): boolean {
  return (frame.rsv & 0x40) !== 0
}

/**
 * A WebSocket client on a bare TCP socket (test/support/raw-websocket.ts): sends the handshake
 * with the given extra header lines, then collects the server's frames as they come.
 */
export class RawClient extends RawWebSocket {
  /** The 101 response's head as text (lower-case header names). */
  head = ''

  static async connect(
    port: number,
    path: string,
    extraHeaders: string[] = [],
    ms = 5000,
  ): Promise<RawClient> {
    const client = new RawClient(await RawWebSocket.dialSocket({ port, timeout: ms }))
    client.socket.on('error', () => {})
    client.write(
      [
        `GET ${path} HTTP/1.1`,
        'Host: 127.0.0.1',
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${SAMPLE_KEY}`,
        'Sec-WebSocket-Version: 13',
        ...extraHeaders,
        '',
        '',
      ].join('\r\n'),
    )
    try {
      const head = await client.readHead(ms)
      client.head = [
        head.statusLine,
        ...Object.entries(head.headers).map(([name, value]) => `${name}: ${value}`),
      ].join('\r\n')
    } catch (error) {
      client.destroy()
      throw error
    }
    client.collectFrames()
    return client
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
      if (!isCompressed(frame)) messages.push(frame.payload.toString('utf8'))
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
