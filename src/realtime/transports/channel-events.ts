/**
 * A channel's publications for the browser's own `EventSource`, read-only and without Rally's
 * client: `new EventSource('/realtime/events?channel=news:main')`. Each publication is one event
 * whose `data` is the publication's JSON data and whose `id` is `<epoch>:<offset>`, so the
 * reconnection EventSource makes by itself (with `Last-Event-ID`) resumes through the channel's
 * history with no gap and no duplicate, as a RallyClient's recovery does. When history cannot
 * cover the gap, a `reset` event says so (the page refetches its state).
 *
 * Behind it is an ordinary realtime session: the authenticate hook sees the request (cookies;
 * `token` in the query if given) and the channel's subscribe rules apply. A `subscribed` event
 * marks the moment the stream is live (after any replay); the session's pings become comment
 * lines, so idle proxies keep the stream. The limits are the HTTP transports': streams count
 * in `maxSessionsPerIp` (429 beyond), and a reader that lets more than `maxQueuedBytes` pile up
 * unread is cut (its EventSource resumes from history when it reconnects).
 */
import type { Realtime } from '../server.js'
import type { RealtimeSession, SessionTransport } from '../session.js'
import type { TransportRequest, TransportResponse } from './http.js'

interface Envelope {
  id?: number
  push?: string
  offset?: number
  epoch?: string
  data?: unknown
  code?: number
  reason?: string
  result?: {
    recovered?: boolean
    offset?: number
    epoch?: string
    publications?: { offset: number; epoch: string; data: unknown }[]
  }
  error?: { code: number; message: string }
}

/** What the HTTP transports lend the event streams: their limits. */
export interface ChannelEventLimits {
  /** Bytes written to a stream and not yet taken by the peer's socket; beyond, the stream is cut. */
  maxQueuedBytes: number
  /** Counts a stream against its address: a release function, or undefined when over the limit. */
  admit(request: TransportRequest): (() => void) | undefined
}

/** Serves `GET <path>/events?channel=…`; false for any other request. */
export function handleChannelEvents(
  // biome-ignore lint/suspicious/noExplicitAny: any realtime, whatever its channel and RPC types
  realtime: Realtime<any, any>,
  path: string,
  request: TransportRequest,
  response: TransportResponse,
  limits: ChannelEventLimits,
): boolean {
  const url = new URL(request.url ?? '/', 'http://localhost')
  if (url.pathname !== `${path}/events` || request.method !== 'GET') return false
  const channel = url.searchParams.get('channel')
  if (channel === null || channel === '') {
    response.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"channel is required"}')
    return true
  }
  // Last-Event-ID is `<epoch>:<offset>` of the last publication the page has.
  const last = (request.headers['last-event-id'] as string | undefined) ?? ''
  const colon = last.lastIndexOf(':')
  const since =
    colon > 0 && Number.isSafeInteger(Number(last.slice(colon + 1)))
      ? { epoch: last.slice(0, colon), offset: Number(last.slice(colon + 1)) }
      : undefined
  const release = limits.admit(request)
  if (release === undefined) {
    response
      .writeHead(429, { 'content-type': 'application/json' })
      .end('{"error":"too many sessions from this address"}')
    return true
  }
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
  })
  response.write('retry: 1000\n\n')
  let session: RealtimeSession | undefined
  // Nothing is written after the end (the session may still push before it learns of it).
  const finish = (text?: string) => {
    if (!response.writableEnded) response.end(text)
  }
  const out = (text: string) => {
    if (response.writableEnded) return
    response.write(text)
    // What the socket has not taken yet grows while the peer does not read: bounded, as a
    // WebSocket's send buffer. The stream ends; the EventSource resumes from history later.
    if (response.writableLength > limits.maxQueuedBytes) {
      response.end()
      session?.transportClosed()
    }
  }
  const write = (offset: number, epoch: string, data: unknown) =>
    out(`id: ${epoch}:${offset}\ndata: ${JSON.stringify(data)}\n\n`)
  const transport: SessionTransport = {
    kind: 'sse-events',
    send(text) {
      const envelope = JSON.parse(text) as Envelope
      if (envelope.push === 'pub') write(envelope.offset!, envelope.epoch!, envelope.data)
      else if (envelope.push === 'ping') {
        // A comment line: EventSource ignores it, a proxy's idle timer sees traffic.
        out(':\n\n')
        queueMicrotask(() => session?.receive('{"cmd":"pong"}', Date.now()))
      } else if ((envelope.id === 1 || envelope.id === 2) && envelope.error !== undefined) {
        finish(`event: refused\ndata: ${JSON.stringify(envelope.error)}\n\n`)
      } else if (envelope.id === 2 && envelope.result !== undefined) {
        const result = envelope.result
        if (since !== undefined && result.recovered !== true) out('event: reset\ndata: {}\n\n')
        for (const pub of result.publications ?? []) write(pub.offset, pub.epoch, pub.data)
        // Live from here: a page (or a test) knows that what is published now reaches it. Its
        // id is the channel's position, so that an EventSource cut before any publication
        // reached it still resumes from there (with no id it would come back as a new reader,
        // missing whatever was published while it reconnected).
        const position =
          typeof result.offset === 'number' && typeof result.epoch === 'string'
            ? `id: ${result.epoch}:${result.offset}\n`
            : ''
        out(`event: subscribed\n${position}data: {}\n\n`)
      } else if (envelope.push === 'unsubscribed' || envelope.push === 'disconnect') {
        // The page's EventSource reconnects and resumes from its Last-Event-ID.
        finish()
      }
    },
    close() {
      finish()
    },
  }
  session = realtime.openSession(transport, request)
  response.on('close', () => {
    release()
    session?.transportClosed()
  })
  const token = url.searchParams.get('token')
  session.receive(
    JSON.stringify({ id: 1, cmd: 'connect', version: 1, ...(token === null ? {} : { token }) }),
    Date.now(),
  )
  session.receive(
    JSON.stringify({ id: 2, cmd: 'subscribe', channel, ...(since ? { since } : {}) }),
    Date.now(),
  )
  return true
}
