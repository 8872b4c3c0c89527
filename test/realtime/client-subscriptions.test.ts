/**
 * RallyClient's subscriptions over real sockets against a scripted server: first subscribe,
 * recovery after a reconnection (exactly the missed publications, then live ones), the explicit
 * recovered:false when history cannot cover the gap, defensive de-duplication by offset, a hole
 * in offsets closed by resynchronising, and refusals.
 */
import assert from 'node:assert/strict'
import { after, afterEach, describe, test } from 'node:test'
import type { Pub, SubscribedEvent } from '../../src/realtime/client/index.js'
import { ErrorCode, encodePubPush, errorReply, UnsubscribeCode } from '../../src/realtime/protocol.js'
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

/** Resolves once `count` publications were received, with all of them. */
function collect(received: unknown[], count: number, subscription: { on: Function }): Promise<void> {
  return new Promise((resolve) => {
    if (received.length >= count) resolve()
    subscription.on('publication', () => {
      if (received.length >= count) resolve()
    })
  })
}

describe('RallyClient subscriptions', () => {
  test('a first subscribe reports recovered:false (the app loads its state) and delivers live publications', async () => {
    const fake = await startFake()
    fake.publish('news', 'before')
    const client = newRallyClient(fake.url)
    const news = client.channel('news')
    const subscribed = nextEvent(news, 'subscribed')
    const received: unknown[] = []
    news.on('publication', (pub) => received.push(pub.data))
    client.connect()
    const event = await subscribed
    assert.deepEqual(event, {
      channel: 'news',
      recovered: false,
      wasRecovering: false,
      offset: 1,
      epoch: 'e1',
    })
    assert.equal(news.state, 'subscribed')
    const done = collect(received, 2, news)
    fake.publish('news', 'a')
    fake.publish('news', 'b')
    await done
    assert.deepEqual(received, ['a', 'b'])
    assert.deepEqual(news.lastPosition, { offset: 3, epoch: 'e1' })
  })

  test('after a reconnection it recovers exactly the missed publications, then goes on live', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const news = client.channel('news')
    const received: number[] = []
    news.on('publication', (pub) => received.push(pub.data as number))
    client.connect()
    await nextEvent(news, 'subscribed')
    fake.publish('news', 1)
    await collect(received, 1, news)
    // Cut, publish while the client is away, then let it back.
    const disconnected = nextEvent(client, 'disconnected')
    for (const connection of fake.connections) connection.ws.terminate()
    await disconnected
    fake.publish('news', 2)
    fake.publish('news', 3)
    const resubscribed = await nextEvent(news, 'subscribed')
    assert.equal(resubscribed.recovered, true)
    assert.equal(resubscribed.wasRecovering, true)
    const since = fake.commandsNamed('subscribe')[1]!.since
    assert.deepEqual(since, { offset: 1, epoch: 'e1' })
    await collect(received, 3, news)
    fake.publish('news', 4)
    await collect(received, 4, news)
    assert.deepEqual(received, [1, 2, 3, 4])
    assert.equal(news.duplicatesDropped, 0)
  })

  test('when history cannot cover the gap, the subscription says recovered:false', async () => {
    const fake = await startFake({ historySize: 2 })
    const client = newRallyClient(fake.url)
    const news = client.channel('news')
    const received: number[] = []
    news.on('publication', (pub) => received.push(pub.data as number))
    client.connect()
    await nextEvent(news, 'subscribed')
    const disconnected = nextEvent(client, 'disconnected')
    for (const connection of fake.connections) connection.ws.terminate()
    await disconnected
    for (let n = 1; n <= 5; n++) fake.publish('news', n)
    const event: SubscribedEvent = await nextEvent(news, 'subscribed')
    assert.equal(event.recovered, false)
    assert.equal(event.wasRecovering, true)
    assert.equal(event.offset, 5)
    // Nothing partial was delivered: the app refetches, then live publications continue.
    fake.publish('news', 6)
    await collect(received, 1, news)
    assert.deepEqual(received, [6])
  })

  test('a publication repeated by the server is delivered once', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const news = client.channel('news')
    const received: number[] = []
    news.on('publication', (pub) => received.push(pub.offset))
    client.connect()
    await nextEvent(news, 'subscribed')
    const pub = fake.publish('news', 'x')
    for (const connection of fake.connections) {
      connection.sendText(encodePubPush('news', pub.offset, pub.epoch, '"x"'))
    }
    fake.publish('news', 'y')
    await collect(received, 2, news)
    assert.deepEqual(received, [1, 2])
    assert.equal(news.duplicatesDropped, 1)
  })

  test('a hole in offsets is never delivered past: the subscription resynchronises from history', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const news = client.channel('news')
    const received: number[] = []
    news.on('publication', (pub) => received.push(pub.offset))
    client.connect()
    await nextEvent(news, 'subscribed')
    fake.publish('news', 1)
    await collect(received, 1, news)
    // Offset 2 goes to history but not to this connection: the client sees 1 then 3.
    const state = fake.channel('news')
    state.offset++
    state.history.push({ channel: 'news', offset: 2, epoch: 'e1', data: 2 })
    const resubscribed = nextEvent(news, 'subscribed')
    fake.publish('news', 3)
    assert.equal((await resubscribed).recovered, true)
    await collect(received, 3, news)
    assert.deepEqual(received, [1, 2, 3])
    assert.equal(news.resyncs, 1)
    const subscribes = fake.commandsNamed('subscribe')
    assert.deepEqual(subscribes[1]!.since, { offset: 1, epoch: 'e1' })
    assert.equal(fake.commandsNamed('unsubscribe').length, 1)
  })

  test('a refused subscribe reports the error and ends the subscription without retrying', async () => {
    const fake = await startFake()
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'subscribe') return false
      connection.send(errorReply(command.id, ErrorCode.PermissionDenied))
      return true
    }
    const client = newRallyClient(fake.url)
    const secret = client.channel('secret')
    const error = nextEvent(secret, 'error')
    const unsubscribed = nextEvent(secret, 'unsubscribed')
    client.connect()
    assert.equal((await error).error.code, ErrorCode.PermissionDenied)
    assert.equal((await unsubscribed).code, ErrorCode.PermissionDenied)
    assert.equal(secret.state, 'unsubscribed')
    assert.equal(client.getChannel('secret'), undefined)
    // The refusal is not retried on the next connection either.
    const reconnected = nextEvent(client, 'connected')
    for (const connection of fake.connections) connection.ws.terminate()
    await reconnected
    await client.rpc('echo', 'barrier')
    assert.equal(fake.commandsNamed('subscribe').length, 1)
  })

  test('a temporary subscribe error is retried', async () => {
    const fake = await startFake()
    let refusals = 0
    fake.onCommand = (connection, command) => {
      if (command.cmd !== 'subscribe' || refusals++ > 0) return false
      connection.send(errorReply(command.id, ErrorCode.TooManyRequests))
      return true
    }
    const client = newRallyClient(fake.url)
    const news = client.channel('news')
    client.connect()
    await nextEvent(news, 'subscribed')
    assert.equal(fake.commandsNamed('subscribe').length, 2)
  })

  test('a subscribe superseded by a resync is not taken for a refusal when the server ends it', async () => {
    // The real server answers a subscribe that an unsubscribe overtook with 115 ("unsubscribed
    // while subscribing"). A resync sends unsubscribe then subscribe: when a second reset comes
    // while the first resync's subscribe is in flight, that subscribe's 115 must not end the
    // subscription (CI saw 50 clients give up a channel this way after a broker lost its store).
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const news = client.channel('news')
    const unsubscribed: unknown[] = []
    news.on('unsubscribed', (event) => unsubscribed.push(event))
    client.connect()
    await nextEvent(news, 'subscribed')
    let superseded: number | undefined
    fake.onCommand = (_connection, command) => {
      if (command.cmd !== 'subscribe' || superseded !== undefined) return false
      superseded = command.id
      return true
    }
    const reset = {
      push: 'unsubscribed',
      channel: 'news',
      code: UnsubscribeCode.Resubscribe,
      reason: 'deliveries may have been missed',
      resubscribe: true,
    }
    const [connection] = fake.connections
    connection!.send(reset)
    await fake.until(() => superseded !== undefined, 5000, 'the first resync subscribe')
    const resubscribed = nextEvent(news, 'subscribed')
    connection!.send(reset)
    await fake.until(() => fake.commandsNamed('subscribe').length === 3, 5000, 'the second resync subscribe')
    await resubscribed
    connection!.send(errorReply(superseded!, ErrorCode.NotSubscribed, 'unsubscribed while subscribing'))
    // The error reply went out before the RPC's reply: once that is back, the client has read it.
    await client.rpc('echo', 'barrier')
    assert.deepEqual(unsubscribed, [])
    assert.equal(news.state, 'subscribed')
    const live = nextEvent(news, 'publication')
    fake.publish('news', 'still here')
    assert.equal((await live).data, 'still here')
  })

  test('unsubscribe() tells the server and stops deliveries; presence is read through the subscription', async () => {
    const fake = await startFake()
    const client = newRallyClient(fake.url)
    const news = client.channel('news', { joinLeave: true })
    client.connect()
    await nextEvent(news, 'subscribed')
    assert.equal(fake.commandsNamed('subscribe')[0]!.joinLeave, true)
    assert.deepEqual(await news.presence(), [])
    const seen: Pub[] = []
    news.on('publication', (pub) => seen.push(pub))
    news.unsubscribe()
    await fake.until(() => fake.commandsNamed('unsubscribe').length === 1, 5000, 'the unsubscribe')
    fake.publish('news', 'after')
    await client.rpc('echo', 'barrier')
    assert.deepEqual(seen, [])
    assert.equal(client.getChannel('news'), undefined)
  })
})
