/**
 * A bus that reports a gap (its broker connection dropped, deliveries may be lost): every
 * subscriber of the channels concerned is told to resubscribe (2001), and resubscribing with its
 * position recovers exactly what it missed.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { MemoryBus } from '../../src/pubsub/memory-bus.js'
import { createRealtime, type Realtime } from '../../src/realtime/index.js'
import { type Envelope, Fixture } from './server-helpers.js'

/** A MemoryBus that can be told to report a gap, and to drop deliveries meanwhile. */
class GappyBus extends MemoryBus {
  private readonly gapReporters: ((channels: readonly string[]) => void)[] = []
  dropping = false

  override onGap(listener: (channels: readonly string[]) => void): () => void {
    this.gapReporters.push(listener)
    return () => {}
  }

  override subscribe(channel: string, deliver: Parameters<MemoryBus['subscribe']>[1]) {
    return super.subscribe(channel, (publication) => {
      if (!this.dropping) deliver(publication)
    })
  }

  reportGap(channels: string[]): void {
    for (const listener of this.gapReporters) listener(channels)
  }
}

describe('realtime server: bus gaps', () => {
  const bus = new GappyBus()
  let fixture: Fixture

  before(async () => {
    const realtime = createRealtime({
      bus,
      channels: { 'feed:*': { history: { size: 100, ttl: 60_000 } } },
      onError: () => {},
    })
    fixture = await new Fixture(realtime as unknown as Realtime).start()
  })
  after(() => fixture.stop())

  test('subscribers are told to resubscribe, and recover what the bus lost', async () => {
    const channel = 'feed:gap'
    const client = await fixture.connected()
    const sub = await client.request('subscribe', { channel })
    await fixture.realtime.publish(channel, 1)
    await client.next((e) => e.push === 'pub' && e.offset === 1)
    bus.dropping = true
    await fixture.realtime.publish(channel, 2)
    await fixture.realtime.publish(channel, 3)
    bus.dropping = false
    bus.reportGap([channel])
    const push = await client.next((e) => e.push === 'unsubscribed')
    assert.equal(push.code, 2001)
    assert.equal(push.resubscribe, true)
    const again = await client.request('subscribe', {
      channel,
      since: { offset: 1, epoch: sub.result?.epoch },
    })
    assert.equal(again.result?.recovered, true)
    assert.deepEqual(
      ((again.result?.publications ?? []) as Envelope[]).map((p) => p.data),
      [2, 3],
    )
    await fixture.realtime.publish(channel, 4)
    const live = await client.next((e) => e.push === 'pub' && e.offset === 4)
    assert.equal(live.data, 4)
    assert.deepEqual(client.pubOffsets(channel), [1, 4])
  })
})
