/**
 * RallyClient's calls (publish, RPC, reads) while disconnected and across a lost connection:
 * the bounded queue (count and bytes), timeouts, order, and the never-twice rules — a publish
 * resent after a reconnection carries the same key (the server drops the repeat), an RPC whose
 * reply was lost is rejected, not resent.
 */
import assert from 'node:assert/strict'
import { after, afterEach, describe, test } from 'node:test'
import { RallyClientError, RallyError } from '../../src/realtime/client/index.js'
import { ErrorCode, errorReply } from '../../src/realtime/protocol.js'
import { FakeRealtimeServer } from './client-fake-server.js'
import { closeAllClients, newRallyClient, nextEvent, rejectionOf } from './client-helpers.js'

const cleanups: (() => Promise<void> | void)[] = []

async function startFake(): Promise<FakeRealtimeServer> {
  const fake = await FakeRealtimeServer.start()
  cleanups.push(() => fake.close())
  return fake
}

afterEach(async () => {
  closeAllClients()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
after(() => closeAllClients())

describe('RallyClient calls while disconnected', () => {
  test('the queue is bounded by count: the call over the limit is rejected at once', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url, { queue: { maxCount: 3 } })
    const queued = [1, 2, 3].map((n) => client.publish('news', n))
    const error = await rejectionOf(client.publish('news', 4))
    assert.ok(error instanceof RallyClientError)
    assert.equal(error.reason, 'queue_full')
    assert.match(error.message, /full \(3 calls/)
    assert.deepEqual(client.queued.count, 3)
    // The queued ones are sent, in order, once connected.
    client.connect()
    const results = await Promise.all(queued)
    assert.deepEqual(
      results.map((r) => r.offset),
      [1, 2, 3],
    )
    assert.deepEqual(
      fake.commandsNamed('publish').map((c) => c.data),
      [1, 2, 3],
    )
    assert.deepEqual(client.queued, { count: 0, bytes: 0 })
  })

  test('the queue is bounded by bytes; a call larger than the whole queue is refused as invalid', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url, { queue: { maxBytes: 400 } })
    const first = client.publish('news', 'x'.repeat(200))
    const full = await rejectionOf(client.publish('news', 'y'.repeat(200)))
    assert.equal((full as RallyClientError).reason, 'queue_full')
    assert.match(full.message, /400 bytes/)
    const huge = await rejectionOf(client.publish('news', 'z'.repeat(500)))
    assert.equal((huge as RallyClientError).reason, 'invalid')
    // Small calls still fit beside the first.
    const small = client.publish('news', 'ok')
    client.connect()
    await Promise.all([first, small])
    assert.equal(fake.commandsNamed('publish').length, 2)
  })

  test('a queued call whose timeout passes is rejected and never sent', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const error = await rejectionOf(client.publish('news', 'late', { timeout: 30 }))
    assert.equal((error as RallyClientError).reason, 'timeout')
    assert.match(error.message, /was not sent/)
    assert.equal(client.queued.count, 0)
    const sent = client.publish('news', 'sent')
    client.connect()
    await sent
    assert.deepEqual(
      fake.commandsNamed('publish').map((c) => c.data),
      ['sent'],
    )
  })

  test('data that is not JSON is refused at once', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const error = await rejectionOf(client.publish('news', cyclic))
    assert.equal((error as RallyClientError).reason, 'invalid')
  })

  test('close() rejects every waiting call with a clear error', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const waiting = client.rpc('echo', 1)
    client.close()
    const error = await rejectionOf(waiting)
    assert.equal((error as RallyClientError).reason, 'closed')
  })
})

describe('RallyClient calls across a lost connection', () => {
  test('a publish in flight when the connection drops is resent with the same key and published once', async () => {
    const fake = await startFake()
    let dropped = false
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'publish' || dropped) return false
      // The server applies the publish, then the connection dies before the reply leaves.
      dropped = true
      fake.publish(command.channel, command.data)
      fake.publishedKeys.set(command.key!, { offset: 1, epoch: 'e1' })
      connection.ws.terminate()
      return true
    }
    const client = newRallyClient(fake.url)
    client.connect()
    await nextEvent(client, 'connected')
    const result = await client.publish('news', 'once')
    assert.deepEqual(result, { offset: 1, epoch: 'e1' })
    const publishes = fake.commandsNamed('publish')
    assert.equal(publishes.length, 2, 'sent, then resent after the reconnection')
    assert.equal(publishes[0]!.key, publishes[1]!.key)
    assert.ok(publishes[0]!.key!.length > 0 && publishes[0]!.key!.length <= 128)
    assert.equal(fake.channel('news').history.length, 1, 'published once')
  })

  test('an RPC in flight when the connection drops is rejected (it may have run), never resent', async () => {
    const fake = await startFake()
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'rpc') return false
      connection.ws.terminate()
      return true
    }
    const client = newRallyClient(fake.url)
    client.connect()
    await nextEvent(client, 'connected')
    const error = await rejectionOf(client.rpc('charge', { amount: 5 }))
    assert.equal((error as RallyClientError).reason, 'connection_lost')
    await nextEvent(client, 'connected')
    assert.equal(fake.commandsNamed('rpc').length, 1)
  })

  test('an RPC without a reply times out; a late reply is ignored', async () => {
    const fake = await startFake()
    const held: { id: number; send: (m: unknown) => void }[] = []
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'rpc') return false
      held.push({ id: command.id, send: connection.send })
      return true
    }
    const client = newRallyClient(fake.url)
    client.connect()
    await nextEvent(client, 'connected')
    const error = await rejectionOf(client.rpc('slow', null, { timeout: 50 }))
    assert.equal((error as RallyClientError).reason, 'timeout')
    assert.match(error.message, /may still have been applied/)
    held[0]!.send({ id: held[0]!.id, result: { data: 'late' } })
    // The next call is answered normally: the late reply did not disturb anything.
    fake.onCommand = undefined
    assert.equal(await client.rpc('echo', 'next'), 'next')
  })

  test('a server error reply rejects with RallyError carrying code and field', async () => {
    const fake = await startFake()
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'publish') return false
      connection.send(errorReply(command.id, ErrorCode.InvalidData, 'text must be a string', 'text'))
      return true
    }
    const client = newRallyClient(fake.url)
    client.connect()
    const error = await rejectionOf(client.publish('chat:1', { text: 5 }))
    assert.ok(error instanceof RallyError)
    assert.equal(error.code, ErrorCode.InvalidData)
    assert.equal(error.field, 'text')
    assert.equal(error.temporary, false)
    assert.equal(client.state, 'connected', 'the connection stays open')
  })
})
