/**
 * The alternatives compared live (issue 15, page 6): one stream of messages delivered four ways —
 * plain polling (GET /compare/poll, answered at once), long polling, SSE and WebSocket (the last
 * three are RallyClients forced onto one transport each) — with the latency and the bytes on the
 * wire per message of each, measured.
 *
 * Bytes are counted on the server's TCP sockets, so they are what really crossed the wire: HTTP
 * status lines and headers, chunked framing, SSE fields, WebSocket frames (after
 * permessage-deflate, for messages above its threshold), heartbeats. A request names its lane
 * and its viewer in the query (`?lane=sse&viewer=…`). Down: `socket.bytesWritten` from the
 * request's arrival to its response's end — a browser sends the next request on a keep-alive
 * socket only after the previous response, so what is written meanwhile is this response; an
 * upgraded WebSocket or an SSE stream holds its socket alone, and is read live. Up: the request
 * as it arrived (request line, headers as received, the declared body), and for a WebSocket the
 * socket's `bytesRead` after the upgrade. Sockets are shared by the page's other requests
 * (scripts, the figures themselves), so counting from socket totals alone would mix them in.
 *
 * The comparison has its own Realtime instance at /compare/rt: its measuring middleware has to
 * run before the transports' routes, and its stream must not mix with the other pages' traffic.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Hono } from 'hono'
import type { NodeWebSocket } from '../adapters/hono/index.js'
import { mountRealtime } from '../realtime/hono.js'
import { createRealtime, type Realtime } from '../realtime/index.js'
import { mountTransports } from '../realtime/transports/hono.js'
import { HttpTransports } from '../realtime/transports/http.js'
import type { DemoPage } from './server.js'

export const COMPARE_PATH = '/compare'
export const COMPARE_REALTIME_PATH = `${COMPARE_PATH}/rt`
export const COMPARE_CHANNEL = 'compare:stream'
export const LANES = ['polling', 'long-polling', 'sse', 'websocket'] as const
export type Lane = (typeof LANES)[number]

export const COMPARE_LIMITS = {
  /** Viewers measured at once; a new one beyond replaces the longest idle. */
  viewers: 50,
  /** Messages the polling endpoint keeps for pollers. */
  kept: 100,
  /** A viewer not heard from (no request of any lane) for this long is forgotten. */
  viewerIdleMs: 60_000,
}

export interface CompareOptions {
  /** Ms between two messages of the stream. Default 500. */
  interval?: number
}

/** One message of the stream: its number and the server's clock when it was sent. */
export interface StreamMessage {
  seq: number
  at: number
  /** Something that changes, as a ticker would carry. */
  value: number
}

/** A lane's bytes: `down` from the server, `up` to it. */
export interface LaneBytes {
  down: number
  up: number
  requests: number
}

/** An exchange in progress on a socket: counted live until its response (or socket) ends. */
interface Open {
  socket: Socket
  /** The request's own bytes (line, headers, declared body). */
  request: number
  /** `socket.bytesRead` when the request arrived, for an upgraded socket's frames after it. */
  read: number | undefined
  written: number
}

interface Viewer {
  lanes: Map<Lane, { done: LaneBytes; open: Set<Open> }>
  seenAt: number
}

export interface Compare {
  realtime: Realtime
  /** Bytes measured so far for a viewer's lanes (undefined: unknown viewer). */
  bytes(viewer: string): Record<Lane, LaneBytes> | undefined
  /** Messages sent on the stream so far. */
  readonly sent: number
  close(): Promise<void>
}

const VIEWER = /^[\w-]{8,64}$/

function isLane(value: string | undefined): value is Lane {
  return (LANES as readonly string[]).includes(value ?? '')
}

/** A request's bytes as it came: request line, header lines as received, the declared body. */
function requestBytes(incoming: IncomingMessage): number {
  let bytes = Buffer.byteLength(`${incoming.method} ${incoming.url} HTTP/${incoming.httpVersion}\r\n\r\n`)
  const raw = incoming.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) bytes += Buffer.byteLength(`${raw[i]}: ${raw[i + 1]}\r\n`)
  const body = Number(incoming.headers['content-length'] ?? 0)
  return bytes + (Number.isSafeInteger(body) && body > 0 ? body : 0)
}

/** An exchange's bytes so far. */
function measured(open: Open): { down: number; up: number } {
  return {
    down: open.socket.bytesWritten - open.written,
    up: open.request + (open.read === undefined ? 0 : open.socket.bytesRead - open.read),
  }
}

export function installCompare(
  app: Hono,
  nodeWebSocket: NodeWebSocket,
  options: CompareOptions = {},
): Compare {
  const interval = options.interval ?? 500
  const viewers = new Map<string, Viewer>()

  function viewerFor(id: string, now: number): Viewer {
    let viewer = viewers.get(id)
    if (viewer === undefined) {
      if (viewers.size >= COMPARE_LIMITS.viewers) {
        const oldest = [...viewers.entries()].sort((a, b) => a[1].seenAt - b[1].seenAt)[0]!
        viewers.delete(oldest[0])
      }
      viewer = { lanes: new Map(), seenAt: now }
      viewers.set(id, viewer)
    }
    viewer.seenAt = now
    return viewer
  }

  function laneOf(viewer: Viewer, lane: Lane) {
    let entry = viewer.lanes.get(lane)
    if (entry === undefined) {
      entry = { done: { down: 0, up: 0, requests: 0 }, open: new Set() }
      viewer.lanes.set(lane, entry)
    }
    return entry
  }

  /** Starts counting the exchange of `incoming` (and its response, or its upgraded socket) for a lane. */
  function meter(
    incoming: IncomingMessage,
    outgoing: ServerResponse | undefined,
    viewerId: string,
    lane: Lane,
  ) {
    const socket = incoming.socket
    const entry = laneOf(viewerFor(viewerId, Date.now()), lane)
    const open: Open = {
      socket,
      request: requestBytes(incoming),
      // No response object: the adapter is upgrading this socket to a WebSocket.
      read: outgoing === undefined ? socket.bytesRead : undefined,
      written: socket.bytesWritten,
    }
    entry.open.add(open)
    entry.done.requests++
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      // A keep-alive socket carries many exchanges: each takes its listener off when it ends.
      socket.off('close', finish)
      entry.open.delete(open)
      const { down, up } = measured(open)
      entry.done.down += down
      entry.done.up += up
    }
    // A response ends with 'finish' (its last byte handed to the socket); an upgraded socket,
    // or one that breaks, with 'close'.
    outgoing?.once('finish', finish)
    socket.once('close', finish)
  }

  function bytes(viewerId: string): Record<Lane, LaneBytes> | undefined {
    const viewer = viewers.get(viewerId)
    if (viewer === undefined) return undefined
    const result = {} as Record<Lane, LaneBytes>
    for (const lane of LANES) {
      const entry = viewer.lanes.get(lane)
      const total = { ...(entry?.done ?? { down: 0, up: 0, requests: 0 }) }
      for (const open of entry?.open ?? []) {
        const { down, up } = measured(open)
        total.down += down
        total.up += up
      }
      result[lane] = total
    }
    return result
  }

  const realtime = createRealtime({
    channels: {
      // Only the server publishes; a little history lets a reconnecting lane catch up.
      [COMPARE_CHANNEL]: { history: { size: COMPARE_LIMITS.kept, ttl: 60_000 } },
    },
    onError(error) {
      console.error(error)
    },
  })

  // The meter first: it sees every request of the lanes, then lets the routes answer.
  app.use(`${COMPARE_PATH}/*`, async (c, next) => {
    const lane = c.req.query('lane')
    const viewer = c.req.query('viewer')
    const env = c.env as { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined
    if (isLane(lane) && viewer !== undefined && VIEWER.test(viewer) && env?.incoming !== undefined)
      meter(env.incoming, env.outgoing, viewer, lane)
    await next()
  })

  const transports = new HttpTransports(realtime, { path: COMPARE_REALTIME_PATH })
  mountTransports(app, transports)
  mountRealtime(app, realtime, nodeWebSocket, COMPARE_REALTIME_PATH)

  // The stream: runs while someone watches (a poll or a subscriber in the last minute).
  const kept: StreamMessage[] = []
  let sent = 0
  let watchedAt = 0
  const timer = setInterval(() => {
    const now = Date.now()
    for (const [id, viewer] of viewers) {
      const open = [...viewer.lanes.values()].some((lane) => lane.open.size > 0)
      if (!open && now - viewer.seenAt > COMPARE_LIMITS.viewerIdleMs) viewers.delete(id)
    }
    if (now - watchedAt > COMPARE_LIMITS.viewerIdleMs && realtime.clients.size === 0) return
    const message: StreamMessage = {
      seq: ++sent,
      at: now,
      value: Math.round(1000 + 100 * Math.sin(sent / 10) + 20 * Math.sin(sent / 1.7)) / 10,
    }
    kept.push(message)
    if (kept.length > COMPARE_LIMITS.kept) kept.shift()
    realtime.publish(COMPARE_CHANNEL, message).catch((error) => console.error(error))
  }, interval)
  timer.unref()

  // Plain polling: what is newer than `after`, at once, even when that is nothing.
  app.get(`${COMPARE_PATH}/poll`, (c) => {
    watchedAt = Date.now()
    const after = Number(c.req.query('after') ?? 0)
    if (!Number.isSafeInteger(after) || after < 0)
      return c.json({ error: '"after" must be a message number (a non-negative integer)' }, 400)
    c.header('Cache-Control', 'no-store')
    return c.json({ messages: kept.filter((message) => message.seq > after) })
  })

  // The figures of one viewer's lanes (this request names no lane: it is not counted).
  app.get(`${COMPARE_PATH}/bytes`, (c) => {
    const viewer = c.req.query('viewer') ?? ''
    if (!VIEWER.test(viewer)) return c.json({ error: '"viewer" must be 8-64 letters, digits, _ or -' }, 400)
    c.header('Cache-Control', 'no-store')
    return c.json({ at: Date.now(), sent, lanes: bytes(viewer) ?? null })
  })

  return {
    realtime,
    bytes,
    get sent() {
      return sent
    },
    async close() {
      clearInterval(timer)
      transports.close()
      await realtime.close()
    },
  }
}

/** The comparison as a demo page: nothing on the shared realtime layer, its own at /compare/rt. */
export const comparePage: DemoPage = {
  name: 'alternatives',
  install({ app, nodeWebSocket }) {
    const compare = installCompare(app, nodeWebSocket)
    return () => compare.close()
  },
}
