/**
 * Channels over real sockets: rules by pattern, publishes acknowledged with offsets, recovery of
 * exactly the missed publications (and recovered: false when history cannot say), presence with
 * join/leave and no ghosts after a client vanishes, publish deduplication by key across a
 * reconnect, RPC, Standard Schema validation naming the field.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { StandardSchemaV1 } from '@standard-schema/spec'
import * as v from 'valibot'
import { z } from 'zod'
import {
  createRealtime,
  type Realtime,
  RealtimeError,
  type StandardSchema,
} from '../../src/realtime/index.js'
import { type Envelope, Fixture } from './server-helpers.js'

const isPub = (channel: string) => (e: Envelope) => e.push === 'pub' && e.channel === channel
const publications = (reply: Envelope) => (reply.result?.publications ?? []) as Envelope[]

describe('realtime server: channels', () => {
  let fixture: Fixture

  before(async () => {
    const realtime = createRealtime({
      onError: () => {},
      authenticate: (_request, token) => ({ user: token ?? 'anon', info: { name: token } }),
      channels: {
        'chat:*': { publish: true, history: { size: 100, ttl: 60_000 }, presence: true },
        'short:*': { publish: true, history: { size: 3, ttl: 60_000 } },
        'long:*': { history: { size: 2000, ttl: 60_000 } },
        'news:*': {},
        'private:*': { subscribe: (session, channel) => channel === `private:${session.user}` },
        'typed:*': {
          publish: (_session, _channel, data: { text: string }) => data.text !== 'forbidden',
          schema: z.object({ text: z.string().max(20), tags: z.array(z.string()).optional() }),
        },
      },
      rpc: {
        add: async (_session, data: { a: number; b: number }) => data.a + data.b,
        whoami: (session) => session.user,
        refuse: () => {
          throw new RealtimeError(103, 'not you')
        },
        crash: () => {
          throw new Error('secret internals')
        },
        greet: {
          schema: v.object({ name: v.string() }),
          handler: (_session, data: { name: string }) => `hello ${data.name}`,
        },
      },
      heartbeat: { interval: 100, timeout: 100 },
    })
    // Types flow from the definitions to clients (RallyClient<typeof realtime> reads '~schema').
    type Schema = NonNullable<(typeof realtime)['~schema']>
    const sum: Schema['rpc']['add']['result'] = 5
    // @ts-expect-error: add's result is a number
    const wrongSum: Schema['rpc']['add']['result'] = 'five'
    const greeting: Schema['rpc']['greet']['params'] = { name: 'Dan' }
    const message: Schema['channels']['typed:*'] = { text: 'hi' }
    // @ts-expect-error: the typed channel's data has a string text
    const wrongMessage: Schema['channels']['typed:*'] = { text: 5 }
    // Any Standard Schema implementation fits the rule's schema type.
    const fromSpec: StandardSchema = z.string() satisfies StandardSchemaV1<string>
    void [sum, wrongSum, greeting, message, wrongMessage, fromSpec]
    fixture = await new Fixture(realtime as unknown as Realtime).start()
  })
  after(() => fixture.stop())

  test('rules: unknown channel 102, refused subscribe 103, server-only publish 103', async () => {
    const client = await fixture.connected({ token: 'bob' })
    assert.equal((await client.request('subscribe', { channel: 'elsewhere' })).error?.code, 102)
    assert.equal((await client.request('subscribe', { channel: 'private:ann' })).error?.code, 103)
    assert.equal((await client.request('subscribe', { channel: 'private:bob' })).error, undefined)
    assert.equal((await client.request('subscribe', { channel: 'private:bob' })).error?.code, 105)
    assert.equal((await client.request('publish', { channel: 'news:x', data: 1 })).error?.code, 103)
    assert.equal((await client.request('unsubscribe', { channel: 'news:x' })).error?.code, 115)
    assert.equal((await client.request('history', { channel: 'news:x' })).error?.code, 108)
    assert.equal((await client.request('presence', { channel: 'news:x' })).error?.code, 108)
  })

  test('a client publish is acknowledged with its offset and reaches every subscriber once', async () => {
    const a = await fixture.connected({ token: 'ann' })
    const b = await fixture.connected({ token: 'bob' })
    await a.request('subscribe', { channel: 'chat:ack' })
    await b.request('subscribe', { channel: 'chat:ack' })
    const first = await b.request('publish', { channel: 'chat:ack', data: { text: 'hi' } })
    assert.equal(first.result?.offset, 1)
    const second = await fixture.realtime.publish('chat:ack', { text: 'from the server' })
    assert.equal(second.offset, 2)
    for (const client of [a, b]) {
      const pubs = await client.collect(isPub('chat:ack'), 2)
      assert.deepEqual(
        pubs.map((p) => [p.offset, p.data]),
        [
          [1, { text: 'hi' }],
          [2, { text: 'from the server' }],
        ],
      )
      assert.equal((pubs[0]?.info as { user: string } | undefined)?.user, 'bob')
      assert.equal(pubs[1]?.info, undefined)
    }
  })

  test('a publish sent right after a subscribe (not awaited) reaches the publisher too', async () => {
    const channel = 'chat:pipelined'
    const client = await fixture.connected({ token: 'ann' })
    client.send('subscribe', { channel })
    const published = await client.request('publish', { channel, data: 'mine' })
    assert.equal(published.result?.offset, 1)
    const pub = await client.next(isPub(channel))
    assert.equal(pub.data, 'mine')
  })

  test('the app unsubscribes a client: an unsubscribed push (2000), then nothing more from the channel', async () => {
    const client = fixture.client()
    const connected = await client.connect({ token: 'ann' })
    await client.request('subscribe', { channel: 'chat:kick' })
    await client.request('subscribe', { channel: 'chat:stay' })
    assert.equal(fixture.realtime.unsubscribe(connected.result?.client as string, 'chat:kick', 'bye'), true)
    const push = await client.next((e) => e.push === 'unsubscribed')
    assert.deepEqual(push, {
      push: 'unsubscribed',
      channel: 'chat:kick',
      code: 2000,
      reason: 'bye',
      resubscribe: false,
    })
    await fixture.realtime.publish('chat:kick', 'not for you')
    await fixture.realtime.publish('chat:stay', 'for you')
    await client.next(isPub('chat:stay'))
    assert.deepEqual(client.pubOffsets('chat:kick'), [])
    assert.equal((await client.request('unsubscribe', { channel: 'chat:kick' })).error?.code, 115)
  })

  test('recovery: exactly the missed publications, then live ones, in order', async () => {
    const channel = 'chat:recover'
    const a = await fixture.connected({ token: 'ann' })
    const sub = await a.request('subscribe', { channel })
    const epoch = sub.result?.epoch as string
    for (let i = 1; i <= 3; i++) await fixture.realtime.publish(channel, i)
    await a.collect(isPub(channel), 3)
    a.close()
    await a.whenClosed()
    for (let i = 4; i <= 8; i++) await fixture.realtime.publish(channel, i)
    const again = await fixture.connected({ token: 'ann' })
    const recovered = await again.request('subscribe', { channel, since: { offset: 3, epoch } })
    assert.equal(recovered.result?.recovered, true)
    assert.deepEqual(
      publications(recovered).map((p) => [p.offset, p.data]),
      [
        [4, 4],
        [5, 5],
        [6, 6],
        [7, 7],
        [8, 8],
      ],
    )
    assert.equal(recovered.result?.offset, 8)
    await fixture.realtime.publish(channel, 9)
    const live = await again.next(isPub(channel))
    assert.equal(live.offset, 9)
    assert.deepEqual(again.pubOffsets(channel), [9])
  })

  test('recovery: 1000 missed publications come back in the one subscribe reply', async () => {
    const channel = 'long:catch-up'
    const first = await fixture.realtime.publish(channel, 0)
    for (let i = 1; i <= 1000; i++) await fixture.realtime.publish(channel, i)
    const client = await fixture.connected()
    const reply = await client.request('subscribe', {
      channel,
      since: { offset: first.offset, epoch: first.epoch },
    })
    assert.equal(reply.result?.recovered, true)
    const recovered = publications(reply)
    assert.equal(recovered.length, 1000)
    assert.deepEqual(
      recovered.map((p) => p.data),
      Array.from({ length: 1000 }, (_, i) => i + 1),
    )
  })

  test('recovery: recovered false when history was trimmed or the epoch changed', async () => {
    const channel = 'short:gap'
    const a = await fixture.connected()
    const sub = await a.request('subscribe', { channel })
    const epoch = sub.result?.epoch as string
    for (let i = 1; i <= 6; i++) await fixture.realtime.publish(channel, i)
    const trimmed = await (await fixture.connected()).request('subscribe', {
      channel,
      since: { offset: 1, epoch },
    })
    assert.equal(trimmed.result?.recovered, false, 'offsets 2 and 3 are gone (history keeps 3)')
    assert.deepEqual(trimmed.result?.publications, [])
    assert.equal(trimmed.result?.offset, 6)
    const covered = await (await fixture.connected()).request('subscribe', {
      channel,
      since: { offset: 3, epoch },
    })
    assert.equal(covered.result?.recovered, true)
    assert.deepEqual(
      publications(covered).map((p) => p.offset),
      [4, 5, 6],
    )
    const otherEpoch = await (await fixture.connected()).request('subscribe', {
      channel,
      since: { offset: 3, epoch: 'a-previous-life' },
    })
    assert.equal(otherEpoch.result?.recovered, false)
  })

  test('history queries by clients and by the app', async () => {
    const channel = 'chat:history'
    for (let i = 1; i <= 5; i++) await fixture.realtime.publish(channel, { n: i })
    const client = await fixture.connected()
    const reply = await client.request('history', { channel, since: { offset: 2, epoch: '' }, limit: 2 })
    assert.equal(reply.result?.complete, false)
    const latest = await client.request('history', { channel, limit: 2 })
    assert.deepEqual(
      publications(latest).map((p) => p.data),
      [{ n: 4 }, { n: 5 }],
    )
    const app = await fixture.realtime.history(channel, {
      since: { offset: 3, epoch: latest.result?.epoch as string },
    })
    assert.deepEqual(
      app.publications.map((p) => p.offset),
      [4, 5],
    )
    assert.equal(app.complete, true)
  })

  test('presence: members, counts, join and leave pushes; a vanished client leaves', async () => {
    const channel = 'chat:presence'
    const watcher = await fixture.connected({ token: 'watcher' })
    await watcher.request('subscribe', { channel, joinLeave: true })
    const ann = await fixture.connected({ token: 'ann' })
    await ann.request('subscribe', { channel })
    const join = await watcher.next((e) => e.push === 'join' && (e.member as { user: string }).user === 'ann')
    assert.deepEqual((join.member as { info: unknown }).info, { name: 'ann' })
    const members = await watcher.request('presence', { channel })
    assert.deepEqual(((members.result?.members ?? []) as { user: string }[]).map((m) => m.user).sort(), [
      'ann',
      'watcher',
    ])
    assert.equal((await watcher.request('presence_count', { channel })).result?.count, 2)
    // The path to ann goes dead (no pong, nothing sent): the heartbeat notices, ann leaves.
    ann.autoPong = false
    const leave = await watcher.next(
      (e) => e.push === 'leave' && (e.member as { user: string }).user === 'ann',
      3000,
    )
    assert.equal((leave.member as { client: string }).client, (join.member as { client: string }).client)
    assert.deepEqual(await fixture.realtime.presence(channel).then((list) => list.map((m) => m.user)), [
      'watcher',
    ])
    assert.equal(await fixture.realtime.presenceCount(channel), 1)
  })

  test('presence: unsubscribing leaves at once', async () => {
    const channel = 'chat:presence-unsub'
    const watcher = await fixture.connected({ token: 'watcher' })
    await watcher.request('subscribe', { channel, joinLeave: true })
    const bob = await fixture.connected({ token: 'bob' })
    await bob.request('subscribe', { channel })
    await bob.request('unsubscribe', { channel })
    await watcher.next((e) => e.push === 'leave' && (e.member as { user: string }).user === 'bob')
    assert.equal(await fixture.realtime.presenceCount(channel), 1)
  })

  test('a publish retried with the same key (after a reconnect) is not published twice', async () => {
    const channel = 'chat:dedup'
    const watcher = await fixture.connected()
    await watcher.request('subscribe', { channel })
    const first = fixture.client()
    const firstConnect = await first.connect({ token: 'ann' })
    const original = await first.request('publish', { channel, data: 'once', key: 'k-1' })
    const repeat = await first.request('publish', { channel, data: 'once', key: 'k-1' })
    assert.deepEqual(repeat.result, original.result)
    first.close()
    await first.whenClosed()
    const second = await fixture.connected({ token: 'ann', session: firstConnect.result?.client })
    const retried = await second.request('publish', { channel, data: 'once', key: 'k-1' })
    assert.deepEqual(retried.result, original.result)
    // Another user naming that session does not inherit its keys.
    const mallory = await fixture.connected({ token: 'mallory', session: firstConnect.result?.client })
    const fresh = await mallory.request('publish', { channel, data: 'mine', key: 'k-1' })
    assert.equal(fresh.result?.offset, 2)
    await watcher.collect(isPub(channel), 2)
    assert.deepEqual(watcher.pubOffsets(channel), [1, 2])
  })

  test('schema: invalid data is refused with 112 naming the field; nothing reaches subscribers', async () => {
    const channel = 'typed:room'
    const watcher = await fixture.connected()
    await watcher.request('subscribe', { channel })
    const client = await fixture.connected()
    const wrongType = await client.request('publish', { channel, data: { text: 5 } })
    assert.equal(wrongType.error?.code, 112)
    assert.equal(wrongType.error?.field, 'text')
    const nested = await client.request('publish', { channel, data: { text: 'ok', tags: ['a', 7] } })
    assert.equal(nested.error?.field, 'tags.1')
    const refused = await client.request('publish', { channel, data: { text: 'forbidden' } })
    assert.equal(refused.error?.code, 103)
    const good = await client.request('publish', { channel, data: { text: 'fine' } })
    assert.equal(good.result?.offset, 1)
    const pub = await watcher.next(isPub(channel))
    assert.deepEqual(pub.data, { text: 'fine' })
    await assert.rejects(fixture.realtime.publish(channel, { text: 42 }), /text/)
  })

  test('RPC: results, app errors, method not found, internal errors without details, schemas', async () => {
    const client = await fixture.connected({ token: 'carol' })
    assert.deepEqual((await client.request('rpc', { method: 'add', data: { a: 2, b: 3 } })).result, {
      data: 5,
    })
    assert.deepEqual((await client.request('rpc', { method: 'whoami' })).result, { data: 'carol' })
    assert.deepEqual((await client.request('rpc', { method: 'refuse' })).error, {
      code: 103,
      message: 'not you',
    })
    assert.equal((await client.request('rpc', { method: 'nope' })).error?.code, 104)
    assert.equal((await client.request('rpc', { method: 'constructor' })).error?.code, 104)
    const crash = await client.request('rpc', { method: 'crash' })
    assert.deepEqual(crash.error, { code: 100, message: 'internal server error', temporary: true })
    assert.deepEqual((await client.request('rpc', { method: 'greet', data: { name: 'Dan' } })).result, {
      data: 'hello Dan',
    })
    const invalid = await client.request('rpc', { method: 'greet', data: { name: 1 } })
    assert.equal(invalid.error?.code, 112)
    assert.equal(invalid.error?.field, 'name')
  })
})
