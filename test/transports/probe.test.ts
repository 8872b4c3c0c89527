/**
 * Moving back to WebSocket: a client that fell back to SSE because upgrades were refused probes
 * WebSocket in the background; once the path allows upgrades, it switches, and the numbered
 * publications flowing meanwhile arrive exactly once, in order, with the resubscription recovered.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import { RallyClient, webSocketTransport } from '../../src/realtime/client/index.js'
import { createRealtime } from '../../src/realtime/index.js'
import { HttpTransports } from '../../src/realtime/transports/http.js'
import { within } from './helpers.js'

test('on SSE while upgrades are refused; back on WebSocket once they pass, no publication lost or repeated', async () => {
  const realtime = createRealtime({
    channels: { 'feed:*': { history: { size: 10_000, ttl: 600_000 } } },
    onError: () => {},
  })
  const transports = new HttpTransports(realtime)
  let upgradesPass = false
  const http = createServer((request, response) => {
    if (!transports.handle(request, response)) response.writeHead(404).end()
  })
  http.on('upgrade', (request, socket, head) => {
    // As a proxy that strips Upgrade: the request never becomes a WebSocket.
    if (!upgradesPass) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')
    else realtime.handleUpgrade(request, socket, head)
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()))
  const { port } = http.address() as AddressInfo
  const client = new RallyClient(`http://127.0.0.1:${port}/realtime`, {
    transports: [webSocketTransport(WebSocket), 'sse'],
    reconnect: { minDelay: 10, maxDelay: 50 },
    probeInterval: 100,
  })
  const over: string[] = []
  client.on('connected', ({ transport }) => over.push(transport))
  const feed = client.channel('feed:n')
  const received: number[] = []
  const recoveries: boolean[] = []
  feed.on('publication', (pub) => received.push(pub.data as number))
  feed.on('subscribed', ({ recovered }) => recoveries.push(recovered))
  const subscribed = new Promise<void>((resolve) => feed.once('subscribed', () => resolve()))
  try {
    client.connect()
    await within(subscribed, 10_000, 'the first subscribe')
    assert.equal(client.transport, 'sse')
    let published = 0
    const publishUntil = async (condition: () => boolean) => {
      while (!condition()) {
        await realtime.publish('feed:n', ++published)
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    // Publications flow over SSE, probes keep failing...
    await publishUntil(() => received.length >= 50)
    // ...then the path allows upgrades: the next probe succeeds and the client moves.
    upgradesPass = true
    await within(
      publishUntil(
        () => client.transport === 'websocket' && feed.state === 'subscribed' && recoveries.length === 2,
      ),
      10_000,
      'the move to WebSocket',
    )
    const last = published + 20
    await publishUntil(() => published >= last)
    await within(
      new Promise<void>((resolve) => {
        const check = () => (received.length >= published ? resolve() : setTimeout(check, 5))
        check()
      }),
      10_000,
      'every publication',
    )
    assert.deepEqual(over, ['sse', 'websocket'])
    assert.deepEqual(recoveries, [false, true])
    assert.deepEqual(
      received,
      Array.from({ length: published }, (_, i) => i + 1),
    )
  } finally {
    client.close()
    await realtime.close()
    transports.close()
    http.closeAllConnections()
    await new Promise<void>((resolve) => http.close(() => resolve()))
  }
})
