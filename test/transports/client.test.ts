/**
 * RallyClient over each forced HTTP transport against a real node:http server: connect,
 * subscribe, publish both ways, RPC — the app code is the same as over WebSocket.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { RallyClient } from '../../src/realtime/client/index.js'
import { longPollingTransport, sseTransport } from '../../src/realtime/client/transports/http.js'
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
