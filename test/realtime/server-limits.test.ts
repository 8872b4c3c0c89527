/**
 * Limits on by default, each answered with its documented code, the connection kept open where
 * the protocol says so, other connections unaffected.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { DEFAULT_REALTIME_LIMITS } from '../../src/realtime/index.js'
import { Fixture } from './server-helpers.js'

describe('realtime server: limits', () => {
  let fixture: Fixture
  let releaseSlowRpc: () => void = () => {}

  before(async () => {
    fixture = await new Fixture({
      channels: { 'room:*': { publish: true } },
      rpc: {
        slow: () =>
          new Promise((resolve) => {
            releaseSlowRpc = () => resolve('done')
          }),
        never: () => new Promise(() => {}),
      },
      limits: {
        channelsPerConnection: 3,
        pendingRpcs: 1,
        maxMessageSize: 1024,
        publishRate: 2,
        subscribeRate: 4,
        floodDisconnect: 5,
        rpcTimeout: 200,
      },
      heartbeat: { interval: 50, timeout: 1000 },
    }).start()
  })
  after(() => {
    releaseSlowRpc()
    return fixture.stop()
  })

  test('every limit has a default', () => {
    for (const [name, value] of Object.entries(DEFAULT_REALTIME_LIMITS)) {
      assert.ok(Number.isFinite(value) && value > 0, name)
    }
  })

  test('channels per connection: 106 beyond the limit', async () => {
    const client = await fixture.connected()
    const replies = []
    for (let i = 0; i < 4; i++) replies.push(await client.request('subscribe', { channel: `room:${i}` }))
    assert.deepEqual(
      replies.map((r) => r.error?.code),
      [undefined, undefined, undefined, 106],
    )
  })

  test('pending RPCs: 106 while one is in flight, served again after', async () => {
    const client = await fixture.connected()
    const first = client.request('rpc', { method: 'slow' })
    const second = await client.request('rpc', { method: 'slow' })
    assert.equal(second.error?.code, 106)
    releaseSlowRpc()
    assert.deepEqual((await first).result, { data: 'done' })
  })

  test('an RPC that never settles is answered 114 after the timeout', async () => {
    const client = await fixture.connected()
    const reply = await client.request('rpc', { method: 'never' }, 3000)
    assert.equal(reply.error?.code, 114)
    assert.equal(reply.error?.temporary, true)
  })

  test('message size: 113 with an id, the connection stays; without one, 4504', async () => {
    const client = await fixture.connected()
    const big = await client.request('publish', { channel: 'room:big', data: 'x'.repeat(2000) })
    assert.equal(big.error?.code, 113)
    assert.equal((await client.request('publish', { channel: 'room:big', data: 'small' })).error, undefined)
    const other = await fixture.connected()
    other.sendRaw(JSON.stringify({ cmd: 'pong', padding: 'x'.repeat(2000) }))
    // A pong carries no id to answer; a huge one is refused by closing.
    assert.equal((await other.whenClosed()).code, 4504)
  })

  test('publish rate: 111 past the burst, temporary', async () => {
    const client = await fixture.connected()
    const replies = await Promise.all(
      Array.from({ length: 6 }, (_, i) => client.request('publish', { channel: 'room:rate', data: i })),
    )
    const refused = replies.filter((r) => r.error?.code === 111)
    assert.ok(refused.length >= 1, 'some publishes were refused')
    assert.equal(refused[0]?.error?.temporary, true)
    assert.ok(replies.filter((r) => r.error === undefined).length >= 2, 'the burst went through')
  })

  test('a subscribe flood is refused with 111, then closed with 4007; other clients are unaffected', async () => {
    const bystander = await fixture.connected()
    await bystander.request('subscribe', { channel: 'room:calm' })
    const flooder = await fixture.connected()
    for (let i = 0; i < 12; i++) flooder.send('subscribe', { channel: `room:flood-${i}` })
    const refused = await flooder.next((e) => e.error?.code === 111)
    assert.match(refused.error?.message ?? '', /subscribe rate/)
    const disconnect = await flooder.next((e) => e.push === 'disconnect')
    assert.deepEqual(disconnect, {
      push: 'disconnect',
      code: 4007,
      reason: 'too many requests',
      reconnect: true,
    })
    assert.equal((await flooder.whenClosed()).code, 4007)
    await fixture.realtime.publish('room:calm', 'still here')
    const pub = await bystander.next((e) => e.push === 'pub' && e.channel === 'room:calm')
    assert.equal(pub.data, 'still here')
  })
})
