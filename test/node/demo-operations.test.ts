/**
 * The demo's operations side over real HTTP: GET /healthz, GET /metrics in the Prometheus text
 * format (figures that move with real sessions on two transports, a publication and its
 * deliveries), the 501 when prom-client cannot be loaded, and the JSON-line logs a connection and
 * its end leave behind.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { listChannels, MAX_LISTED_CHANNELS } from '../../src/demo/metrics.js'
import { PROM_CLIENT_MISSING } from '../../src/demo/prometheus.js'
import { type Demo, startDemo } from '../../src/demo/server.js'
import { WebSocket } from '../../src/index.js'
import { RallyClient } from '../../src/realtime/client/index.js'
import { waitUntil, withTimeout } from '../support/timing.js'

/** One sample line of a Prometheus exposition: `name{labels} value`. */
function sampleOf(exposition: string, name: string, labels = ''): number | undefined {
  const prefix = `${name}${labels === '' ? '' : `{${labels}}`} `
  const line = exposition.split('\n').find((candidate) => candidate.startsWith(prefix))
  return line === undefined ? undefined : Number(line.slice(prefix.length))
}

/** The next `event` of a RallyClient or Subscription (their own emitter: on() returns its off). */
function next<T>(
  emitter: { once(event: never, listener: (value: T) => void): () => void },
  event: string,
  ms: number,
): Promise<T> {
  let off = () => {}
  return withTimeout(
    new Promise<T>((resolve) => {
      off = emitter.once(event as never, resolve)
    }),
    ms,
    `the ${event} event`,
  ).finally(() => off())
}

describe('the demo: /healthz, /metrics and its logs', { timeout: 60_000 }, () => {
  let demo: Demo
  const lines: Record<string, unknown>[] = []
  const clients: RallyClient[] = []

  before(async () => {
    demo = await startDemo({
      port: 0,
      host: '127.0.0.1',
      statsInterval: 200,
      logLevel: 'info',
      logWrite: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    })
  })

  after(async () => {
    for (const client of clients) client.close()
    await demo?.close()
  })

  const url = (path: string) => `http://127.0.0.1:${demo.port}${path}`

  async function connected(transport: 'websocket' | 'sse', token?: string): Promise<RallyClient> {
    const client = new RallyClient(`ws://127.0.0.1:${demo.port}/rt`, {
      WebSocket,
      token,
      transports: [transport],
      reconnect: false,
      // Generous: the machine running the suite may be heavily loaded; this bounds a hang only.
      connectTimeout: 30_000,
    })
    clients.push(client)
    const ready = next(client, 'connected', 30_000)
    client.connect()
    await ready
    return client
  }

  it('GET /healthz: 200, JSON, the bus up, not cached', async () => {
    const response = await fetch(url('/healthz'))
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/)
    assert.equal(response.headers.get('cache-control'), 'no-store')
    const body = (await response.json()) as Record<string, unknown>
    assert.equal(body.status, 'ok')
    assert.deepEqual(body.bus, { kind: 'memory', up: true })
    assert.equal(body.node, demo.metrics.bus.nodeId)
  })

  it('GET /metrics: sessions by transport, publications, deliveries, bytes, channels, event loop, memory', async () => {
    const before = await (await fetch(url('/metrics'))).text()
    const publicationsBefore = sampleOf(before, 'rally_publications_total') ?? 0

    const ws = await connected('websocket', 'wanda')
    const sse = await connected('sse', 'sam')
    const room = 'chat:ops'
    const wsRoom = ws.channel(room)
    const sseRoom = sse.channel(room)
    await Promise.all([next(wsRoom, 'subscribed', 10_000), next(sseRoom, 'subscribed', 10_000)])
    const received = Promise.all([next(wsRoom, 'publication', 10_000), next(sseRoom, 'publication', 10_000)])
    await ws.publish(room, { text: 'counted' })
    await received

    const response = await fetch(url('/metrics'))
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
    const text = await response.text()
    assert.match(text, /^# HELP rally_sessions /m)
    assert.match(text, /^# TYPE rally_deliveries_total counter$/m)
    assert.equal(sampleOf(text, 'rally_sessions', 'transport="websocket"'), 1)
    assert.equal(sampleOf(text, 'rally_sessions', 'transport="sse"'), 1)
    assert.ok((sampleOf(text, 'rally_publications_total') ?? 0) >= publicationsBefore + 1)
    // One publication, one subscriber on each transport.
    assert.ok((sampleOf(text, 'rally_deliveries_total', 'transport="websocket"') ?? 0) >= 1, text)
    assert.ok((sampleOf(text, 'rally_deliveries_total', 'transport="sse"') ?? 0) >= 1, text)
    assert.equal(sampleOf(text, 'rally_channel_subscribers', `channel="${room}"`), 2)
    assert.ok((sampleOf(text, 'rally_received_bytes_total') ?? 0) > 0)
    assert.ok((sampleOf(text, 'rally_sent_bytes_total') ?? 0) > 0)
    assert.ok((sampleOf(text, 'rally_connections') ?? 0) >= 2)
    assert.ok((sampleOf(text, 'rally_websocket_messages_received_total') ?? 0) >= 2)
    assert.notEqual(sampleOf(text, 'rally_event_loop_utilization_ratio'), undefined)
    // prom-client's own process metrics come along (memory, CPU).
    assert.ok((sampleOf(text, 'process_resident_memory_bytes') ?? 0) > 0)
    assert.ok((sampleOf(text, 'nodejs_heap_size_used_bytes') ?? 0) > 0)
    ws.close()
    sse.close()
  })

  it('logs one JSON line per connect and per disconnect, with the reason', async () => {
    const client = await connected('websocket', 'logan')
    const id = client.clientId!
    const connect = lines.find((line) => line.event === 'connect' && line.client === id)
    assert.ok(connect, JSON.stringify(lines))
    assert.equal(connect.user, 'logan')
    assert.equal(connect.transport, 'websocket')
    assert.equal(connect.level, 'info')
    assert.match(String(connect.time), /^\d{4}-\d\d-\d\dT/)

    assert.ok(demo.live.realtime.disconnect(id, 4008, 'moved by the test'))
    await waitUntil(
      () => lines.some((line) => line.event === 'disconnect' && line.client === id),
      10_000,
      'the disconnect line',
    )
    const disconnect = lines.find((line) => line.event === 'disconnect' && line.client === id)!
    assert.equal(disconnect.code, 4008)
    assert.equal(disconnect.reason, 'moved by the test')
    assert.equal(disconnect.by, 'server')

    const leaving = await connected('sse', 'lea')
    const leavingId = leaving.clientId!
    leaving.close()
    await waitUntil(
      () => lines.some((line) => line.event === 'disconnect' && line.client === leavingId),
      10_000,
      "the line for the client's own close",
    )
    const refused = new RallyClient(`ws://127.0.0.1:${demo.port}/rt`, {
      WebSocket,
      token: 'no spaces',
      reconnect: false,
    })
    const closed = next<{ reason: string }>(refused, 'closed', 10_000)
    refused.connect()
    await closed
    const refusal = lines.find((line) => line.event === 'refuse')
    assert.ok(refusal, JSON.stringify(lines.slice(-5)))
    assert.match(String(refusal.reason), /nickname/)
  })

  it('the listening line says where and on which bus', () => {
    const listening = lines.find((line) => line.event === 'listening')
    assert.ok(listening)
    assert.equal(listening.port, demo.port)
    assert.equal(listening.bus, 'memory')
  })
})

describe('GET /metrics without prom-client', () => {
  it('answers 501 saying what to install', async () => {
    const demo = await startDemo({
      port: 0,
      host: '127.0.0.1',
      statsInterval: 60_000,
      // As Node reports a package that is not installed.
      loadPromClient: () =>
        Promise.reject(
          Object.assign(new Error("Cannot find package 'prom-client'"), { code: 'ERR_MODULE_NOT_FOUND' }),
        ),
    })
    try {
      const response = await withTimeout(fetch(`http://127.0.0.1:${demo.port}/metrics`), 10_000, '/metrics')
      assert.equal(response.status, 501)
      assert.equal(await response.text(), PROM_CLIENT_MISSING)
    } finally {
      await demo.close()
    }
  })
})

describe('a route that throws', () => {
  it('answers 500 without the stack and logs the error with it', async () => {
    const lines: Record<string, unknown>[] = []
    const demo = await startDemo({
      port: 0,
      host: '127.0.0.1',
      statsInterval: 60_000,
      logWrite: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
      // prom-client present but broken: not the 501 case, an error of the route.
      loadPromClient: () => Promise.reject(new Error('prom-client failed to initialise')),
    })
    try {
      const response = await withTimeout(fetch(`http://127.0.0.1:${demo.port}/metrics`), 10_000, '/metrics')
      assert.equal(response.status, 500)
      assert.equal(await response.text(), 'Internal Server Error')
      const logged = lines.find((line) => line.event === 'http-error')
      assert.ok(logged, JSON.stringify(lines))
      assert.equal(logged.level, 'error')
      assert.equal(logged.path, '/metrics')
      assert.equal(logged.error, 'prom-client failed to initialise')
      assert.match(String(logged.stack), /prom-client failed/)
    } finally {
      await demo.close()
    }
  })
})

describe('per-channel subscriber counts', () => {
  it('list the most subscribed channels, then the rest summed as "(other)" (bounded labels)', () => {
    const channels = new Map<string, number>()
    for (let i = 1; i <= MAX_LISTED_CHANNELS + 5; i++) channels.set(`chat:${String(i).padStart(2, '0')}`, i)
    const listed = listChannels(channels)
    assert.equal(listed.length, MAX_LISTED_CHANNELS + 1)
    assert.deepEqual(listed[0], {
      channel: `chat:${MAX_LISTED_CHANNELS + 5}`,
      subscribers: MAX_LISTED_CHANNELS + 5,
    })
    // The five least subscribed (1 to 5) are summed.
    assert.deepEqual(listed.at(-1), { channel: '(other)', subscribers: 1 + 2 + 3 + 4 + 5 })
    assert.deepEqual(
      listChannels(
        new Map([
          ['b', 1],
          ['a', 1],
        ]),
      ),
      [
        { channel: 'a', subscribers: 1 },
        { channel: 'b', subscribers: 1 },
      ],
    )
  })
})
