/**
 * RallyClient over each forced HTTP transport against a real node:http server: connect,
 * subscribe, publish both ways, RPC — the app code is the same as over WebSocket.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import { RallyClient, webSocketTransport } from '../../src/realtime/client/index.js'
import { longPollingTransport, sseTransport } from '../../src/realtime/client/transports/http.js'
import { createRealtime } from '../../src/realtime/index.js'
import { HttpTransports } from '../../src/realtime/transports/http.js'
import { startTransportServer, type TransportServer, within } from './helpers.js'

for (const [name, factory] of [
  ['sse', sseTransport],
  ['long-polling', longPollingTransport],
] as const) {
  describe(`RallyClient over ${name}`, () => {
    let server: TransportServer
    before(async () => {
      server = await startTransportServer({ rpc: { echo: async (_session: unknown, data: unknown) => data } })
    })
    after(() => server.close())

    test('connects, subscribes, receives server and client publications, calls RPC', async () => {
      const client = new RallyClient(server.url, { transports: [factory()] })
      try {
        const connected = new Promise<{ transport: string }>((resolve) => client.on('connected', resolve))
        const room = client.channel('chat:lobby')
        const received: unknown[] = []
        const two = new Promise<void>((resolve) =>
          room.on('publication', (pub) => {
            received.push(pub.data)
            if (received.length === 2) resolve()
          }),
        )
        const subscribed = new Promise<void>((resolve) => room.on('subscribed', () => resolve()))
        client.connect()
        assert.equal((await within(connected, 5000, 'connected')).transport, name)
        await within(subscribed, 5000, 'subscribed')
        await server.realtime.publish('chat:lobby', { n: 1 })
        await room.publish({ n: 2 })
        await within(two, 5000, 'two publications')
        assert.deepEqual(received, [{ n: 1 }, { n: 2 }])
        assert.deepEqual(await client.rpc('echo', { hello: name }), { hello: name })
        assert.equal(server.transports.size, 1)
      } finally {
        client.close()
      }
    })
  })
}

describe('RallyClient transports by name', () => {
  test("transports: ['sse'] forces SSE; the transport property names it once connected", async () => {
    const server = await startTransportServer()
    const client = new RallyClient(server.url, { transports: ['sse'] })
    try {
      assert.equal(client.transport, undefined)
      const connected = new Promise<{ transport: string }>((resolve) => client.on('connected', resolve))
      client.connect()
      assert.equal((await within(connected, 5000, 'connected')).transport, 'sse')
      assert.equal(client.transport, 'sse')
    } finally {
      client.close()
      await server.close()
    }
  })

  test('an unknown name is refused at construction', () => {
    assert.throws(
      () => new RallyClient('http://127.0.0.1:1/realtime', { transports: ['carrier-pigeon' as 'sse'] }),
      /unknown transport "carrier-pigeon"/,
    )
  })

  test('WebSocket refused and SSE not served: the client falls back to long polling', async () => {
    const realtime = createRealtime({ channels: { 'chat:*': { publish: true } }, onError: () => {} })
    // A plain node:http server with only long polling and no upgrade handler: node drops upgrades.
    const transports = new HttpTransports(realtime, { transports: ['long-polling'] })
    const http = createServer((request, response) => {
      if (!transports.handle(request, response)) response.writeHead(404).end()
    })
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()))
    const { port } = http.address() as AddressInfo
    const client = new RallyClient(`http://127.0.0.1:${port}/realtime`, {
      transports: [webSocketTransport(WebSocket), 'sse', 'long-polling'],
      reconnect: { minDelay: 10, maxDelay: 50 },
    })
    const failures: string[] = []
    client.on('disconnected', ({ reason }) => failures.push(reason))
    try {
      const connected = new Promise<{ transport: string }>((resolve) => client.on('connected', resolve))
      client.connect()
      assert.equal((await within(connected, 10_000, 'connected')).transport, 'long-polling')
      assert.equal(failures.length, 2, failures.join('; '))
      // What worked is remembered for this origin and path: the next client starts with it.
      const next = new RallyClient(`http://127.0.0.1:${port}/realtime`, {
        transports: [webSocketTransport(WebSocket), 'sse', 'long-polling'],
      })
      const nextFailures: string[] = []
      next.on('disconnected', ({ reason }) => nextFailures.push(reason))
      const nextConnected = new Promise<{ transport: string }>((resolve) => next.on('connected', resolve))
      next.connect()
      assert.equal((await within(nextConnected, 5000, 'the next client')).transport, 'long-polling')
      assert.deepEqual(nextFailures, [])
      next.close()
    } finally {
      client.close()
      await realtime.close()
      transports.close()
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    }
  })
})

test('a WebSocket that opens but never answers connect (a buffering proxy) gives way to SSE', async () => {
  // Upgrades go to a realtime whose authenticate never settles: the socket opens, no reply comes.
  const stuck = createRealtime({ channels: {}, authenticate: () => new Promise(() => {}), onError: () => {} })
  const realtime = createRealtime({ channels: { 'chat:*': {} }, onError: () => {} })
  const transports = new HttpTransports(realtime)
  const http = createServer((request, response) => {
    if (!transports.handle(request, response)) response.writeHead(404).end()
  })
  http.on('upgrade', (request, socket, head) => stuck.handleUpgrade(request, socket, head))
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()))
  const { port } = http.address() as AddressInfo
  const client = new RallyClient(`http://127.0.0.1:${port}/realtime`, {
    transports: [webSocketTransport(WebSocket), 'sse'],
    connectTimeout: 300,
    reconnect: { minDelay: 10, maxDelay: 50 },
  })
  const failures: string[] = []
  client.on('disconnected', ({ reason }) => failures.push(reason))
  try {
    const connected = new Promise<{ transport: string }>((resolve) => client.on('connected', resolve))
    client.connect()
    assert.equal((await within(connected, 10_000, 'connected')).transport, 'sse')
    assert.deepEqual(failures, ['no connect reply within 300 ms'])
  } finally {
    client.close()
    await stuck.close()
    await realtime.close()
    transports.close()
    http.closeAllConnections()
    await new Promise<void>((resolve) => http.close(() => resolve()))
  }
})

test('client.close() ends its HTTP session on the server at once', async () => {
  const server = await startTransportServer()
  try {
    for (const name of ['sse', 'long-polling'] as const) {
      const client = new RallyClient(server.url, { transports: [name] })
      const connected = new Promise<void>((resolve) => client.on('connected', () => resolve()))
      client.connect()
      await within(connected, 5000, `connected over ${name}`)
      assert.equal(server.realtime.clients.size, 1)
      client.close()
      await within(
        new Promise<void>((resolve) => {
          const check = () =>
            server.transports.size === 0 && server.realtime.clients.size === 0
              ? resolve()
              : setTimeout(check, 5)
          check()
        }),
        2000,
        `the ${name} session to end (the default expiry is 45 s)`,
      )
    }
  } finally {
    await server.close()
  }
})
