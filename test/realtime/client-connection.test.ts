/**
 * RallyClient's connection life over real sockets, against a scripted rally.v1 server: states
 * and their events, reconnection after a drop, the application heartbeat judging a silent path
 * dead (through the fault proxy's black hole), refusals with a token refresh, and the server's
 * disconnect advice.
 */
import assert from 'node:assert/strict'
import { after, afterEach, describe, test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import {
  type ConnectionState,
  type TransportFactory,
  webSocketTransport,
} from '../../src/realtime/client/index.js'
import { DisconnectCode, disconnectPush, ErrorCode, errorReply } from '../../src/realtime/protocol.js'
import { FaultProxy } from '../support/fault-proxy.js'
import { FakeRealtimeServer, type FakeServerOptions } from './client-fake-server.js'
import { closeAllClients, newRallyClient, nextEvent } from './client-helpers.js'

const cleanups: (() => Promise<void> | void)[] = []

async function startFake(options?: FakeServerOptions): Promise<FakeRealtimeServer> {
  const fake = await FakeRealtimeServer.start(options)
  cleanups.push(() => fake.close())
  return fake
}

afterEach(async () => {
  closeAllClients()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
after(() => closeAllClients())

describe('RallyClient connection', () => {
  test('connects with rally.v1 and version 1, reports its states in order, and closes', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url, { token: 'secret' })
    const states: ConnectionState[] = []
    client.on('state', ({ state }) => states.push(state))
    const connected = nextEvent(client, 'connected')
    client.connect()
    const { client: id, transport } = await connected
    assert.equal(id, 'c1')
    assert.equal(transport, 'websocket')
    assert.equal(client.clientId, 'c1')
    const [connect] = fake.commandsNamed('connect')
    assert.deepEqual({ version: connect!.version, token: connect!.token }, { version: 1, token: 'secret' })
    const closed = nextEvent(client, 'closed')
    client.close()
    assert.equal((await closed).reconnect, false)
    assert.deepEqual(states, ['connecting', 'connected', 'closed'])
    await fake.until(() => fake.connections.size === 0, 5000, 'the server to see the close')
  })

  test('reconnects after the connection drops, with the previous client id as session', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    client.connect()
    await nextEvent(client, 'connected')
    const disconnected = nextEvent(client, 'disconnected')
    const reconnected = nextEvent(client, 'connected', ({ client }) => client === 'c2')
    for (const connection of fake.connections) connection.ws.terminate()
    const reason = await disconnected
    assert.equal(reason.reconnect, true)
    assert.equal(reason.code, 1006)
    assert.ok(reason.delay >= 0 && reason.delay < 10, `first retry within minDelay, got ${reason.delay}`)
    await reconnected
    assert.equal(fake.commandsNamed('connect')[1]!.session, 'c1')
  })

  test('answers pings with pongs, and judges a silent path dead and reconnects', async () => {
    const fake = await startFake({ ping: 100, sendPings: true })
    const proxy = await FaultProxy.start({ targetPort: fake.port })
    cleanups.push(() => proxy.close())
    const client = newRallyClient(`ws://127.0.0.1:${proxy.port}/`, { silenceLimit: (ping) => ping * 2 })
    client.connect()
    await nextEvent(client, 'connected')
    await fake.until(() => fake.commandsNamed('pong').length >= 2, 5000, 'two pongs')
    // Server → client bytes vanish: no close, no error, only the heartbeat can tell.
    proxy.blackHole('downstream')
    const disconnected = await nextEvent(client, 'disconnected', undefined, 5000)
    assert.equal(disconnected.code, DisconnectCode.HeartbeatTimeout)
    assert.match(disconnected.reason, /no message from the server for 200 ms/)
    assert.ok(proxy.counters.swallowed.downstream > 0)
    proxy.heal()
    await nextEvent(client, 'connected', undefined, 5000)
  })

  test('a connect that gets no reply times out and is retried', async () => {
    const fake = await startFake()
    let swallowed = 0
    fake.onCommand = (_connection, command) => command.cmd === 'connect' && swallowed++ === 0
    const client = newRallyClient(fake.url, { connectTimeout: 150 })
    client.connect()
    const disconnected = await nextEvent(client, 'disconnected')
    assert.match(disconnected.reason, /no connect reply within 150 ms/)
    await nextEvent(client, 'connected')
    assert.equal(fake.commandsNamed('connect').length, 2)
  })

  test('an unauthorized refusal asks getToken once for a new token and retries with it', async () => {
    const fake = await startFake()
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'connect' || command.token === 'fresh') return false
      connection.send(errorReply(command.id, ErrorCode.Unauthorized))
      return true
    }
    const tokens = ['stale', 'fresh']
    let asked = 0
    const client = newRallyClient(fake.url, { getToken: () => tokens[asked++]! })
    client.connect()
    await nextEvent(client, 'connected')
    assert.equal(asked, 2)
    assert.deepEqual(
      fake.commandsNamed('connect').map((c) => c.token),
      ['stale', 'fresh'],
    )
  })

  test('a refusal that a new token does not fix is terminal: closed, no more attempts', async () => {
    const fake = await startFake()
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'connect') return false
      connection.send(errorReply(command.id, ErrorCode.Unauthorized))
      connection.send(disconnectPush(DisconnectCode.Unauthorized))
      connection.ws.close(DisconnectCode.Unauthorized, 'unauthorized')
      return true
    }
    let asked = 0
    const client = newRallyClient(fake.url, { getToken: () => `token-${++asked}` })
    const states: ConnectionState[] = []
    client.on('state', ({ state }) => states.push(state))
    client.connect()
    const closed = await nextEvent(client, 'closed')
    assert.equal(closed.code, DisconnectCode.Unauthorized)
    assert.equal(closed.reconnect, false)
    assert.equal(asked, 2, 'one token at first, one fresh token after the refusal')
    assert.equal(fake.commandsNamed('connect').length, 2)
    assert.deepEqual(states, ['connecting', 'disconnected', 'connecting', 'closed'])
    // A call now fails at once with a clear error instead of waiting.
    await assert.rejects(client.rpc('echo', 1), { name: 'RallyClientError', reason: 'closed' })
  })

  test('a terminal disconnect advice (>= 4500) stops the client; a 4xxx < 4500 one reconnects', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    client.connect()
    await nextEvent(client, 'connected')
    const disconnected = nextEvent(client, 'disconnected')
    for (const connection of fake.connections) {
      connection.send(disconnectPush(DisconnectCode.GoingAway))
      connection.ws.close(DisconnectCode.GoingAway, 'going away')
    }
    assert.equal((await disconnected).code, DisconnectCode.GoingAway)
    await nextEvent(client, 'connected')
    const closed = nextEvent(client, 'closed')
    for (const connection of fake.connections) {
      connection.send(disconnectPush(DisconnectCode.ForceDisconnect))
      connection.ws.close(DisconnectCode.ForceDisconnect, 'force disconnect')
    }
    const reason = await closed
    assert.equal(reason.code, DisconnectCode.ForceDisconnect)
    assert.equal(client.state, 'closed')
    assert.equal(fake.connectCount, 2)
  })

  test('with reconnect: false, a drop closes the client', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url, { reconnect: false })
    client.connect()
    await nextEvent(client, 'connected')
    const closed = nextEvent(client, 'closed')
    for (const connection of fake.connections) connection.ws.terminate()
    assert.equal((await closed).code, 1006)
  })

  test('a server that does not answer with rally.v1 is treated as a failed connection', async () => {
    const { createServer } = await import('../../src/index.js')
    const plain = createServer({ port: 0, host: '127.0.0.1', heartbeat: false })
    await plain.ready()
    cleanups.push(() => plain.close())
    const client = newRallyClient(`ws://127.0.0.1:${plain.port}/`)
    client.connect()
    const disconnected = await nextEvent(client, 'disconnected')
    assert.match(disconnected.reason, /rally\.v1/)
  })
})

describe('RallyClient tokens', () => {
  test('before the token expires, getToken is asked for a new one, sent with refresh', async () => {
    const fake = await startFake()
    const refreshed: string[] = []
    fake.onCommand = (connection, command) => {
      if (command.cmd === 'connect') {
        fake.connectCount++
        connection.connected = true
        connection.send({
          id: command.id,
          result: { client: connection.client, version: 1, ping: 25_000, expires: 60 },
        })
        return true
      }
      if (command.cmd === 'refresh') {
        refreshed.push(command.token)
        connection.send({ id: command.id, result: { expires: 600_000 } })
        return true
      }
      return false
    }
    let asked = 0
    const client = newRallyClient(fake.url, { getToken: () => `token-${++asked}` })
    client.connect()
    await nextEvent(client, 'connected')
    await fake.until(() => refreshed.length === 1, 5000, 'the refresh command')
    assert.deepEqual(refreshed, ['token-2'])
    assert.equal(fake.connectCount, 1, 'refreshed on the same connection')
    assert.equal(client.state, 'connected')
  })

  test('an expired token without getToken is terminal: retrying the same token cannot help', async () => {
    const fake = await startFake()
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'connect') return false
      connection.send(errorReply(command.id, ErrorCode.TokenExpired))
      return true
    }
    const client = newRallyClient(fake.url, { token: 'old' })
    client.connect()
    const closed = await nextEvent(client, 'closed')
    assert.equal(closed.code, DisconnectCode.TokenExpired)
    assert.equal(fake.commandsNamed('connect').length, 1)
  })
})

describe('RallyClient transports', () => {
  test('a transport that fails before opening gives way to the next; the one that connects is kept', async () => {
    const fake = await startFake()
    let brokenOpens = 0
    // Stands for a transport this network blocks: it never opens.
    const blocked: TransportFactory = {
      name: 'blocked',
      open(_url, events) {
        brokenOpens++
        queueMicrotask(() => events.onClose({ code: 1006, reason: 'blocked here', failedToOpen: true }))
        return { send: () => false, close: () => {} }
      },
    }
    // No probes: the first connection over a fallback probes the preferred transport at once
    // (test/transports/probe.test.ts), which would open `blocked` again in the background.
    const client = newRallyClient(fake.url, {
      transports: [blocked, webSocketTransport(WebSocket)],
      probeInterval: false,
    })
    const first = nextEvent(client, 'disconnected')
    const connected = nextEvent(client, 'connected')
    client.connect()
    assert.equal((await first).reason, 'blocked here')
    assert.equal((await connected).transport, 'websocket')
    assert.equal(brokenOpens, 1)
    // After a drop, the working transport is used again, not the blocked one.
    const again = nextEvent(client, 'connected')
    for (const connection of fake.connections) connection.ws.terminate()
    assert.equal((await again).transport, 'websocket')
    assert.equal(brokenOpens, 1)
  })
})
