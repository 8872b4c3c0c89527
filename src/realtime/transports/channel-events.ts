/**
 * A channel's publications for the browser's own `EventSource`, read-only and without Rally's
 * client: `new EventSource('/realtime/events?channel=news:main')`. Each publication is one event
 * whose `data` is the publication's JSON data and whose `id` is `<epoch>:<offset>`, so the
 * reconnection EventSource makes by itself (with `Last-Event-ID`) resumes through the channel's
 * history with no gap and no duplicate, as a RallyClient's recovery does. When history cannot
 * cover the gap, a `reset` event says so (the page refetches its state).
 *
 * Behind it is an ordinary realtime session: the authenticate hook sees the request (cookies;
 * `token` in the query if given) and the channel's subscribe rules apply.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Realtime } from '../server.js'
import type { RealtimeSession, SessionTransport } from '../session.js'

interface Envelope {
  id?: number
  push?: string
  offset?: number
  epoch?: string
  data?: unknown
  code?: number
  reason?: string
  result?: { recovered?: boolean; publications?: { offset: number; epoch: string; data: unknown }[] }
  error?: { code: number; message: string }
}

/** Serves `GET <path>/events?channel=…`; false for any other request. */
export function handleChannelEvents(
  // biome-ignore lint/suspicious/noExplicitAny: any realtime, whatever its channel and RPC types
  realtime: Realtime<any, any>,
  path: string,
  request: IncomingMessage,
  response: ServerResponse,
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
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
  })
  response.write('retry: 1000\n\n')
  let session: RealtimeSession | undefined
  const write = (offset: number, epoch: string, data: unknown) =>
    response.write(`id: ${epoch}:${offset}\ndata: ${JSON.stringify(data)}\n\n`)
  const transport: SessionTransport = {
    kind: 'sse-events',
    send(text) {
      const envelope = JSON.parse(text) as Envelope
      if (envelope.push === 'pub') write(envelope.offset!, envelope.epoch!, envelope.data)
      else if (envelope.push === 'ping') queueMicrotask(() => session?.receive('{"cmd":"pong"}', Date.now()))
      else if (envelope.id === 1 && envelope.error !== undefined) {
        response.end(`event: refused\ndata: ${JSON.stringify(envelope.error)}\n\n`)
      } else if (envelope.id === 2 && envelope.error !== undefined) {
        response.end(`event: refused\ndata: ${JSON.stringify(envelope.error)}\n\n`)
      } else if (envelope.id === 2 && envelope.result !== undefined) {
        const result = envelope.result
        if (since !== undefined && result.recovered !== true) response.write('event: reset\ndata: {}\n\n')
        for (const pub of result.publications ?? []) write(pub.offset, pub.epoch, pub.data)
      } else if (envelope.push === 'unsubscribed' || envelope.push === 'disconnect') {
        // The page's EventSource reconnects and resumes from its Last-Event-ID.
        response.end()
      }
    },
    close() {
      response.end()
    },
  }
  session = realtime.openSession(transport, request)
  response.on('close', () => session?.transportClosed())
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
