/**
 * RallyClient with no `transports` option: WebSocket, then SSE, then long polling. Against a
 * server serving all three it stays on WebSocket; against one serving only the WebSocket (Rally's
 * own port), the fallbacks' refused `P/open` is an ordinary failed attempt, never a stop, and the
 * client ends on WebSocket even when it started elsewhere; in a runtime with no WebSocket it
 * starts with SSE.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import { RallyClient } from '../../src/realtime/client/index.js'
import { forgetTransports, rememberTransport } from '../../src/realtime/client/transports/memory.js'
import { createRealtime } from '../../src/realtime/index.js'
import { startTransportServer, within } from './helpers.js'

/** The next `connected` event's transport. */
function nextConnected(client: RallyClient): Promise<string> {
  return new Promise((resolve) => {
    const off = client.on('connected', ({ transport }) => {
      off()
      resolve(transport)
    })
  })
}

/**
 * Connects `client`; resolves with the transport it connected over and the reasons of its
 * `disconnected` events (the list keeps growing afterwards).
 */
async function connectWatched(client: RallyClient): Promise<{ transport: string; failures: string[] }> {
  const failures: string[] = []
  client.on('disconnected', ({ reason }) => failures.push(reason))
  const connected = nextConnected(client)
  client.connect()
  return { transport: await within(connected, 10_000, 'connected'), failures }
}

test('by default a client connects over WebSocket to a server that serves every transport', async () => {
  forgetTransports()
  const server = await startTransportServer()
  const client = new RallyClient(server.url, { WebSocket })
  try {
    const { transport, failures } = await connectWatched(client)
    assert.equal(transport, 'websocket')
    assert.equal(client.transport, 'websocket')
    assert.deepEqual(failures, [])
  } finally {
    client.close()
    await server.close()
  }
})

test('a WebSocket-only server: the fallbacks are refused, the client reaches and keeps WebSocket', async () => {
  forgetTransports()
  const realtime = createRealtime({ channels: { 'chat:*': { publish: true } }, onError: () => {} })
  const server = await realtime.listen({ port: 0, host: '127.0.0.1', transports: false })
  const url = `ws://127.0.0.1:${server.port}/`
  // A memory from another network (or another server on this port) sends the client to SSE first.
  rememberTransport(url, 'sse')
  const client = new RallyClient(url, { WebSocket, reconnect: { minDelay: 10, maxDelay: 50 } })
  const closed: string[] = []
  client.on('closed', ({ reason }) => closed.push(reason))
  try {
    const { transport, failures } = await connectWatched(client)
    assert.equal(transport, 'websocket')
    // SSE then long polling were each refused once (their P/open is not served here).
    assert.equal(failures.length, 2, failures.join('; '))
    for (const failure of failures) assert.match(failure, /open refused with HTTP 4\d\d/)
    // A dropped connection comes back over WebSocket at once: the transport that worked is kept.
    const back = nextConnected(client)
    assert.equal(realtime.disconnect(client.clientId!, 4008, 'test drop'), true)
    assert.equal(await within(back, 10_000, 'reconnected'), 'websocket')
    assert.deepEqual(failures.slice(2), ['test drop'])
    assert.deepEqual(closed, [])
  } finally {
    client.close()
    await realtime.close()
  }
})

test('a stale remembered fallback: the client starts on it and moves to WebSocket at once', async () => {
  forgetTransports()
  const server = await startTransportServer()
  // The memory of another network: SSE connects at once, then the first probe (not probeInterval,
  // 60 s by default) finds WebSocket and the client moves.
  rememberTransport(server.url, 'sse')
  const client = new RallyClient(server.url, { WebSocket })
  const over: string[] = []
  const onWebSocket = new Promise<void>((resolve) =>
    client.on('connected', ({ transport }) => {
      over.push(transport)
      if (transport === 'websocket') resolve()
    }),
  )
  try {
    client.connect()
    await within(onWebSocket, 10_000, 'the move to WebSocket')
    assert.deepEqual(over, ['sse', 'websocket'])
  } finally {
    client.close()
    await server.close()
  }
})

test('a refused connect (expired token) proves the WebSocket works: the retry stays on it', async () => {
  forgetTransports()
  const server = await startTransportServer({
    authenticate: (_request, token) =>
      token === 'fresh' ? { user: 'ann' } : { refuse: 'token expired', code: 'token expired' },
  })
  const client = new RallyClient(server.url, {
    WebSocket,
    token: 'stale',
    getToken: () => 'fresh',
    reconnect: { minDelay: 10, maxDelay: 50 },
  })
  try {
    const { transport, failures } = await connectWatched(client)
    assert.equal(transport, 'websocket')
    assert.equal(failures.length, 1, failures.join('; '))
    assert.match(failures[0]!, /token expired/)
  } finally {
    client.close()
    await server.close()
  }
})

test('without any WebSocket the default starts with SSE; naming websocket still throws', async () => {
  forgetTransports()
  const saved = (globalThis as { WebSocket?: unknown }).WebSocket
  ;(globalThis as { WebSocket?: unknown }).WebSocket = undefined
  const server = await startTransportServer()
  try {
    assert.throws(
      () => new RallyClient(server.url, { transports: ['websocket'] }),
      /No WebSocket constructor/,
    )
    const client = new RallyClient(server.url)
    try {
      const { transport, failures } = await connectWatched(client)
      assert.equal(transport, 'sse')
      assert.deepEqual(failures, [])
    } finally {
      client.close()
    }
  } finally {
    ;(globalThis as { WebSocket?: unknown }).WebSocket = saved
    await server.close()
  }
})
