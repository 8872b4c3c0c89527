/**
 * The bus conformance suite: one set of tests for every `Bus` (src/pubsub/bus.ts), run by
 * memory.test.ts, redis.test.ts and nats.test.ts. Two bus instances on one broker stand for two
 * nodes; what an implementation cannot do (MemoryBus has no broker to share, restart or count
 * subscriptions on) is declared by leaving the corresponding hook out, and those tests are skipped.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Bus, BusEvent, BusPublication } from '../../src/pubsub/bus.js'

/** What a test may ask of a new bus: a short presence expiry, a short idempotency window. */
export interface BusTestOptions {
  presenceTtl?: number
  dedupTtl?: number
}

export interface BusUnderTest {
  readonly name: string
  /** Starts the broker, if any. */
  setUp?(): Promise<void>
  tearDown?(): Promise<void>
  /** A new bus: a node of the cluster when `shared`. */
  createBus(options?: BusTestOptions): Promise<Bus>
  /** Whether buses from `createBus` share one broker (publications, history, presence). */
  readonly shared: boolean
  /** Makes the broker lose every channel's history and epoch (flush, or restart without data). */
  loseHistory?(): Promise<void>
  /** Restarts the broker (kill -9, then start on the same port) while buses stay connected. */
  restartBroker?(): Promise<void>
  /** Subscriptions the broker holds for the channel's publications, across all nodes. */
  brokerSubscriptions?(channel: string): Promise<number>
}

/** How long any awaited event may take before the test fails with a description of it. */
const EVENT_TIMEOUT_MS = 10_000

/** Collects values and lets a test await a number of them (never a fixed sleep). */
class Inbox<T> {
  readonly items: T[] = []
  #waiters: Array<{ count: number; resolve: () => void }> = []
  readonly push = (item: T): void => {
    this.items.push(item)
    this.#waiters = this.#waiters.filter((waiter) => {
      if (this.items.length < waiter.count) return true
      waiter.resolve()
      return false
    })
  }
  async until(count: number, what: string): Promise<T[]> {
    if (this.items.length < count) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        new Promise<void>((resolve) => this.#waiters.push({ count, resolve })),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`timed out waiting for ${count} ${what}; got ${this.items.length}`)),
            EVENT_TIMEOUT_MS,
          )
        }),
      ]).finally(() => clearTimeout(timer))
    }
    return this.items
  }
}

/**
 * Polls `check` until it holds: only for conditions that time itself brings about (history and
 * presence expiring), which no event announces.
 */
async function eventually(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = EVENT_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const offsetsOf = (publications: readonly BusPublication[]) => publications.map((p) => p.offset)

const KEEP = { size: 100, ttl: 60_000 }

export function busConformance(spec: BusUnderTest): void {
  describe(`Bus conformance: ${spec.name}`, () => {
    const buses: Bus[] = []
    let sequence = 0
    // Each test its own channels, so that tests never see each other's publications.
    const channelName = (label: string) => `conf-${label}-${process.pid}-${++sequence}`
    const node = async (options?: BusTestOptions) => {
      const bus = await spec.createBus(options)
      buses.push(bus)
      return bus
    }

    before(async () => {
      await spec.setUp?.()
    })
    after(async () => {
      await Promise.allSettled(buses.map((bus) => bus.close()))
      await spec.tearDown?.()
    })

    test('offsets are 1, 2, 3… per channel, delivered in order with data, info and time', async () => {
      const bus = await node()
      assert.equal(bus.status, 'up', 'a connected bus is up')
      const channel = channelName('offsets')
      const other = channelName('offsets-other')
      const inbox = new Inbox<BusPublication>()
      await bus.subscribe(channel, inbox.push)
      const before = Date.now()
      const first = await bus.publish(channel, { data: '{"n":1}', info: '{"user":"u1"}', history: KEEP })
      const second = await bus.publish(channel, { data: '"two"', history: KEEP })
      const elsewhere = await bus.publish(other, { data: '1', history: KEEP })
      const third = await bus.publish(channel, { data: '[3,"é✓"]', history: KEEP })
      assert.deepEqual(
        [first.offset, second.offset, third.offset, elsewhere.offset],
        [1, 2, 3, 1],
        'offsets count per channel',
      )
      assert.equal(first.epoch, third.epoch)
      const received = await inbox.until(3, 'publications')
      assert.deepEqual(offsetsOf(received), [1, 2, 3])
      assert.deepEqual(
        received.map((p) => [p.channel, p.data, p.info, p.epoch]),
        [
          [channel, '{"n":1}', '{"user":"u1"}', first.epoch],
          [channel, '"two"', undefined, first.epoch],
          [channel, '[3,"é✓"]', undefined, first.epoch],
        ],
      )
      for (const publication of received) {
        // The broker's clock, not ours: allow a little skew, but it must be a real timestamp.
        assert.ok(Math.abs(publication.time - before) < 60_000, `time ${publication.time} near ${before}`)
      }
    })

    test('two nodes see the same offsets, each publication once and in order, whoever published', {
      skip: !spec.shared && 'one process: no second node shares this bus',
    }, async () => {
      const [a, b] = [await node(), await node()]
      const channel = channelName('two-nodes')
      const inboxA = new Inbox<BusPublication>()
      const inboxB = new Inbox<BusPublication>()
      await a.subscribe(channel, inboxA.push)
      await b.subscribe(channel, inboxB.push)
      const count = 40
      const published = await Promise.all(
        Array.from({ length: count }, (_, i) =>
          (i % 2 === 0 ? a : b).publish(channel, { data: JSON.stringify(i), history: KEEP }),
        ),
      )
      const byOffset = new Map(published.map((position, i) => [position.offset, JSON.stringify(i)]))
      assert.equal(byOffset.size, count, 'every publication got its own offset')
      const expected = Array.from({ length: count }, (_, i) => i + 1)
      for (const inbox of [inboxA, inboxB]) {
        const received = await inbox.until(count, 'publications')
        assert.deepEqual(offsetsOf(received), expected)
        for (const publication of received) assert.equal(publication.data, byOffset.get(publication.offset))
      }
      // Nothing more arrives later (a duplicate would): a marker is the next thing each node sees.
      await a.publish(channel, { data: '"end"', history: KEEP })
      for (const inbox of [inboxA, inboxB]) {
        const received = await inbox.until(count + 1, 'the marker')
        assert.equal(received.length, count + 1)
        assert.equal(received.at(-1)?.data, '"end"')
      }
    })

    test('three nodes publishing at once on three channels: every node sees each channel 1…N in order, once', {
      skip: !spec.shared && 'one process: no second node shares this bus',
    }, async () => {
      const nodes = [await node(), await node(), await node()]
      const channels = [channelName('many-a'), channelName('many-b'), channelName('many-c')]
      const perNode = 30
      const inboxes = new Map<string, Inbox<BusPublication>>()
      for (const [n, bus] of nodes.entries())
        for (const channel of channels) {
          const inbox = new Inbox<BusPublication>()
          inboxes.set(`${n} ${channel}`, inbox)
          await bus.subscribe(channel, inbox.push)
        }
      await Promise.all(
        nodes.flatMap((bus, n) =>
          channels.map(async (channel) => {
            for (let i = 0; i < perNode; i++)
              await bus.publish(channel, { data: JSON.stringify(`${n}:${i}`) })
          }),
        ),
      )
      const total = perNode * nodes.length
      for (const channel of channels) {
        const seen = new Map<number, string>()
        for (const n of nodes.keys()) {
          const received = await inboxes
            .get(`${n} ${channel}`)!
            .until(total, `publications on ${channel} at node ${n}`)
          assert.deepEqual(
            offsetsOf(received),
            Array.from({ length: total }, (_, i) => i + 1),
          )
          for (const p of received) {
            // The same offset carries the same publication on every node.
            if (!seen.has(p.offset)) seen.set(p.offset, p.data)
            assert.equal(p.data, seen.get(p.offset))
          }
        }
        // Each publisher's publications keep their order within the channel.
        for (const n of nodes.keys()) {
          const mine = [...seen.values()].filter((data) => data.startsWith(`"${n}:`))
          assert.deepEqual(
            mine,
            Array.from({ length: perNode }, (_, i) => JSON.stringify(`${n}:${i}`)),
          )
        }
      }
    })

    test('history: since, limit and complete; the latest position; the same from another node', async () => {
      const bus = await node()
      const reader = spec.shared ? await node() : bus
      const channel = channelName('history')
      const empty = await reader.history(channel, {})
      assert.equal(empty.latest.offset, 0)
      assert.deepEqual(empty.publications, [])
      assert.equal(empty.complete, true)
      let epoch = ''
      for (let i = 1; i <= 10; i++)
        epoch = (await bus.publish(channel, { data: String(i), history: KEEP })).epoch
      assert.equal(empty.latest.epoch, epoch, 'the epoch given before the first publication stays')

      const since3 = await reader.history(channel, { since: { offset: 3, epoch } })
      assert.deepEqual(offsetsOf(since3.publications), [4, 5, 6, 7, 8, 9, 10])
      assert.deepEqual(
        since3.publications.map((p) => p.data),
        ['4', '5', '6', '7', '8', '9', '10'],
      )
      assert.deepEqual(since3.latest, { offset: 10, epoch })
      assert.equal(since3.complete, true)

      const limited = await reader.history(channel, { since: { offset: 3, epoch }, limit: 3 })
      assert.deepEqual(offsetsOf(limited.publications), [4, 5, 6])
      assert.equal(limited.complete, false, 'cut by the limit')

      const latest = await reader.history(channel, { limit: 3 })
      assert.deepEqual(offsetsOf(latest.publications), [8, 9, 10])
      assert.equal(latest.complete, true)

      const upToDate = await reader.history(channel, { since: { offset: 10, epoch } })
      assert.deepEqual(upToDate.publications, [])
      assert.equal(upToDate.complete, true)

      const fromStart = await reader.history(channel, { since: { offset: 0, epoch } })
      assert.deepEqual(offsetsOf(fromStart.publications), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      assert.equal(fromStart.complete, true)

      const otherEpoch = await reader.history(channel, { since: { offset: 3, epoch: `${epoch}-not` } })
      const future = await reader.history(channel, { since: { offset: 11, epoch } })
      assert.equal(future.complete, false, 'a position past the latest is not a position of this history')
      assert.deepEqual(future.publications, [])

      assert.equal(otherEpoch.complete, false, 'a position from another epoch cannot be recovered')
      assert.deepEqual(otherEpoch.publications, [])
      assert.deepEqual(otherEpoch.latest, { offset: 10, epoch })
    })

    test('history trimmed by size: complete is false once the gap reaches past what is kept', async () => {
      const bus = await node()
      const channel = channelName('trim-size')
      let epoch = ''
      for (let i = 1; i <= 5; i++)
        epoch = (await bus.publish(channel, { data: String(i), history: { size: 3, ttl: 60_000 } })).epoch
      const all = await bus.history(channel, {})
      assert.deepEqual(offsetsOf(all.publications), [3, 4, 5])
      const fromOne = await bus.history(channel, { since: { offset: 1, epoch } })
      assert.deepEqual(offsetsOf(fromOne.publications), [3, 4, 5])
      assert.equal(fromOne.complete, false, 'publication 2 was trimmed away')
      const fromTwo = await bus.history(channel, { since: { offset: 2, epoch } })
      assert.deepEqual(offsetsOf(fromTwo.publications), [3, 4, 5])
      assert.equal(fromTwo.complete, true)
    })

    test('history trimmed by age: expired publications are gone, offsets go on', async () => {
      const bus = await node()
      const channel = channelName('trim-ttl')
      const short = { size: 10, ttl: 300 }
      await bus.publish(channel, { data: '1', history: short })
      const { epoch } = await bus.publish(channel, { data: '2', history: short })
      const kept = await bus.history(channel, { since: { offset: 0, epoch } })
      assert.deepEqual(offsetsOf(kept.publications), [1, 2])
      await eventually(
        async () => (await bus.history(channel, {})).publications.length === 0,
        'the publications to expire',
      )
      const gone = await bus.history(channel, { since: { offset: 0, epoch } })
      assert.equal(gone.complete, false)
      assert.deepEqual(gone.latest, { offset: 2, epoch }, 'the position outlives the publications')
      const third = await bus.publish(channel, { data: '3', history: short })
      assert.deepEqual(third, { offset: 3, epoch })
      const after = await bus.history(channel, { since: { offset: 2, epoch } })
      assert.deepEqual(offsetsOf(after.publications), [3])
      assert.equal(after.complete, true)
    })

    test('a publication without a history policy follows the channel’s last one', async () => {
      const bus = await node()
      const channel = channelName('policy')
      await bus.publish(channel, { data: '1', history: { size: 2, ttl: 60_000 } })
      await bus.publish(channel, { data: '2' })
      const { epoch } = await bus.publish(channel, { data: '3' })
      const result = await bus.history(channel, { since: { offset: 1, epoch } })
      assert.deepEqual(offsetsOf(result.publications), [2, 3])
      assert.equal(result.complete, true)
    })

    test('history ttl 0 has no age limit, only the size', async () => {
      const bus = await node()
      const channel = channelName('no-ttl')
      let epoch = ''
      for (let i = 1; i <= 3; i++)
        epoch = (await bus.publish(channel, { data: String(i), history: { size: 2, ttl: 0 } })).epoch
      const result = await bus.history(channel, { since: { offset: 1, epoch } })
      assert.deepEqual(offsetsOf(result.publications), [2, 3])
      assert.equal(result.complete, true)
    })

    test('channel names with dots, wildcards, spaces, braces and non-ASCII stay distinct and work', async () => {
      const a = await node()
      const b = spec.shared ? await node() : a
      const names = [
        'chat.room',
        'chat*room',
        'chat>room',
        'chat room',
        'chat{room}',
        'chat=2eroom',
        'café:☕',
      ]
      const suffix = `-${channelName('names')}`
      const inboxes = new Map<string, Inbox<BusPublication>>()
      for (const name of names) {
        const inbox = new Inbox<BusPublication>()
        inboxes.set(name, inbox)
        await b.subscribe(name + suffix, inbox.push)
      }
      for (const name of names) await a.publish(name + suffix, { data: JSON.stringify(name), history: KEEP })
      for (const name of names) {
        const [received] = await inboxes.get(name)!.until(1, `a publication on ${name}`)
        assert.deepEqual(
          [received!.channel, received!.offset, received!.data],
          [name + suffix, 1, JSON.stringify(name)],
        )
        const history = await b.history(name + suffix, {})
        assert.deepEqual(
          history.publications.map((p) => p.data),
          [JSON.stringify(name)],
        )
        await a.join(name + suffix, { client: `c-${name}`, user: 'u' })
        assert.deepEqual(
          (await b.members(name + suffix)).map((m) => m.client),
          [`c-${name}`],
        )
      }
    })

    test('history size 0 keeps nothing but still assigns offsets', async () => {
      const bus = await node()
      const channel = channelName('no-history')
      await bus.publish(channel, { data: '1' })
      const { epoch, offset } = await bus.publish(channel, { data: '2', history: { size: 0, ttl: 0 } })
      assert.equal(offset, 2)
      const result = await bus.history(channel, { since: { offset: 0, epoch } })
      assert.deepEqual(result.publications, [])
      assert.equal(result.complete, false)
      assert.deepEqual(result.latest, { offset: 2, epoch })
    })

    test('emit and listen: every listening node receives each event once, none after unlisten', async () => {
      const a = await node()
      const b = spec.shared ? await node() : a
      const channel = channelName('events')
      const inboxA = new Inbox<BusEvent>()
      const inboxB = new Inbox<BusEvent>()
      const stopA = await a.listen(channel, inboxA.push)
      await b.listen(channel, inboxB.push)
      // Publications and events do not mix.
      const publications = new Inbox<BusPublication>()
      await a.subscribe(channel, publications.push)
      await a.emit({ channel, data: '{"join":"c1"}' })
      await b.emit({ channel, data: '{"leave":"c1"}' })
      for (const inbox of [inboxA, inboxB]) {
        const received = await inbox.until(2, 'events')
        assert.deepEqual(received.map((e) => e.data).sort(), ['{"join":"c1"}', '{"leave":"c1"}'])
        assert.ok(received.every((e) => e.channel === channel))
      }
      await stopA()
      await b.emit({ channel, data: '"after"' })
      await inboxB.until(3, 'the event after unlisten')
      await a.publish(channel, { data: '"marker"' })
      await publications.until(1, 'the marker publication')
      assert.equal(inboxA.items.length, 2, 'no event after unlisten')
      assert.equal(inboxB.items.length, 3)
    })

    test('subscriptions are reference-counted: one broker subscription, none left after the last', async () => {
      const bus = await node()
      const channel = channelName('refcount')
      const first = new Inbox<BusPublication>()
      const second = new Inbox<BusPublication>()
      const stopFirst = await bus.subscribe(channel, first.push)
      const stopSecond = await bus.subscribe(channel, second.push)
      if (spec.brokerSubscriptions) assert.equal(await spec.brokerSubscriptions(channel), 1)
      await bus.publish(channel, { data: '1' })
      await first.until(1, 'publication 1 (first)')
      await second.until(1, 'publication 1 (second)')
      await stopFirst()
      await stopFirst() // twice is harmless
      if (spec.brokerSubscriptions) assert.equal(await spec.brokerSubscriptions(channel), 1)
      await bus.publish(channel, { data: '2' })
      await second.until(2, 'publication 2')
      assert.deepEqual(offsetsOf(first.items), [1], 'nothing after its unsubscribe')
      await stopSecond()
      if (spec.brokerSubscriptions) assert.equal(await spec.brokerSubscriptions(channel), 0)
      // Subscribing again works and starts from the next publication.
      const third = new Inbox<BusPublication>()
      const stopThird = await bus.subscribe(channel, third.push)
      await bus.publish(channel, { data: '3' })
      assert.deepEqual(offsetsOf(await third.until(1, 'publication 3')), [3])
      await stopThird()
      if (spec.brokerSubscriptions) assert.equal(await spec.brokerSubscriptions(channel), 0)
    })

    test('no duplicates: a node gets its own and others’ publications once per subscription', async () => {
      const a = await node()
      const b = spec.shared ? await node() : a
      const channel = channelName('no-dup')
      const one = new Inbox<BusPublication>()
      const two = new Inbox<BusPublication>()
      await a.subscribe(channel, one.push)
      await a.subscribe(channel, two.push)
      for (let i = 0; i < 10; i++) {
        await a.publish(channel, { data: `"a${i}"` })
        await b.publish(channel, { data: `"b${i}"` })
      }
      await a.publish(channel, { data: '"end"' })
      for (const inbox of [one, two]) {
        const received = await inbox.until(21, 'publications')
        assert.deepEqual(
          offsetsOf(received),
          Array.from({ length: 21 }, (_, i) => i + 1),
        )
      }
    })

    test('presence: joins and leaves seen from every node, members refreshed while their node lives, a dead node’s members expire', async () => {
      const ttl = 600
      const a = await node({ presenceTtl: ttl })
      const b = spec.shared ? await node({ presenceTtl: ttl }) : a
      const channel = channelName('presence')
      await a.join(channel, { client: 'ca', user: 'ua', info: { name: 'Ann' } })
      await a.join(channel, { client: 'ca2', user: 'ua' })
      await b.join(channel, { client: 'cb', user: 'ub' })
      await b.join(channel, { client: 'cb', user: 'ub' }) // a refresh, not a second member
      for (const reader of [a, b]) {
        const members = [...(await reader.members(channel))].sort((x, y) => x.client.localeCompare(y.client))
        assert.deepEqual(members, [
          { client: 'ca', user: 'ua', info: { name: 'Ann' } },
          { client: 'ca2', user: 'ua' },
          { client: 'cb', user: 'ub' },
        ])
        assert.equal(await reader.memberCount(channel), 3)
      }
      await a.leave(channel, 'ca2')
      assert.deepEqual((await b.members(channel)).map((m) => m.client).sort(), ['ca', 'cb'])
      assert.equal(await b.memberCount(channel), 2)
      if (!spec.shared) return
      // b dies: it stops refreshing and never says leave. Its member drops out; a's, which a keeps
      // refreshing, stays although it was joined once, longer than the time to live ago.
      const joinedAt = Date.now()
      await b.close()
      await eventually(
        async () => (await a.members(channel)).every((m) => m.client !== 'cb'),
        'the dead node’s member to expire',
      )
      assert.ok(Date.now() - joinedAt >= ttl / 2, 'it did not vanish at once')
      await eventually(async () => Date.now() - joinedAt > 2 * ttl, 'twice the time to live')
      assert.deepEqual(
        (await a.members(channel)).map((m) => m.client),
        ['ca'],
      )
      assert.equal(await a.memberCount(channel), 1)
    })

    test('presence: a node whose last member leaves shows none, and can join again', async () => {
      const a = await node()
      const b = spec.shared ? await node() : a
      const channel = channelName('presence-empty')
      await a.join(channel, { client: 'only', user: 'u' })
      assert.equal(await b.memberCount(channel), 1)
      await a.leave(channel, 'only')
      await a.leave(channel, 'only') // leaving twice is harmless
      assert.deepEqual(await b.members(channel), [])
      assert.equal(await b.memberCount(channel), 0)
      await a.join(channel, { client: 'only', user: 'u', info: { again: true } })
      assert.deepEqual(await b.members(channel), [{ client: 'only', user: 'u', info: { again: true } }])
    })

    test('the epoch changes when the broker loses its history', {
      skip: !spec.loseHistory && 'no broker to flush',
    }, async () => {
      const a = await node({ presenceTtl: 600 })
      const b = await node({ presenceTtl: 600 })
      const channel = channelName('epoch')
      await a.join(channel, { client: 'ca', user: 'ua' })
      const gaps = new Inbox<readonly string[]>()
      b.onGap(gaps.push)
      const received = new Inbox<BusPublication>()
      await b.subscribe(channel, received.push)
      await a.publish(channel, { data: '1', history: KEEP })
      const before = await a.publish(channel, { data: '2', history: KEEP })
      await received.until(2, 'the publications before the loss')
      await spec.loseHistory!()
      const afterLoss = await a.publish(channel, { data: '3', history: KEEP })
      assert.equal(afterLoss.offset, 1, 'offsets restart in the new epoch')
      assert.notEqual(afterLoss.epoch, before.epoch)
      // The subscribed node is told, whether or not its connection dropped (a flush does not);
      // what it missed meanwhile is in the new epoch's history, and delivery goes on.
      assert.ok((await gaps.until(1, 'a gap report')).some((channels) => channels.includes(channel)))
      const result = await b.history(channel, { since: before })
      assert.equal(result.complete, false, 'a position from the lost epoch is never reported complete')
      assert.deepEqual(result.latest, afterLoss)
      const missed = await b.history(channel, { since: { offset: 0, epoch: afterLoss.epoch } })
      assert.deepEqual(
        missed.publications.map((p) => [p.offset, p.data]),
        [[1, '3']],
      )
      const later = new Inbox<BusPublication>()
      await b.subscribe(channel, later.push)
      const next = await a.publish(channel, { data: '4', history: KEEP })
      const [fourth] = await later.until(1, 'the next publication')
      assert.deepEqual([fourth!.offset, fourth!.epoch, fourth!.data], [2, next.epoch, '4'])
      assert.ok(received.items.every((p) => p.epoch === before.epoch || p.epoch === next.epoch))
      // Presence converges again: the live node writes its members back on its next refresh.
      await eventually(
        async () => (await b.members(channel)).some((m) => m.client === 'ca'),
        'the live node’s member to come back',
      )
    })

    test('a broker restart: buses reconnect, resubscribe, report the gap, and deliver again', {
      skip: !spec.restartBroker && 'no broker to restart',
    }, async () => {
      const a = await node()
      const b = await node()
      const channel = channelName('restart')
      const idle = channelName('restart-idle')
      const inboxA = new Inbox<BusPublication>()
      const inboxB = new Inbox<BusPublication>()
      await a.subscribe(channel, inboxA.push)
      await b.subscribe(channel, inboxB.push)
      const stopIdle = await b.subscribe(idle, () => {})
      await stopIdle()
      const gapsA = new Inbox<readonly string[]>()
      const gapsB = new Inbox<readonly string[]>()
      a.onGap(gapsA.push)
      b.onGap(gapsB.push)
      const statusesA = new Inbox<string>()
      a.onStatus(statusesA.push)
      await a.publish(channel, { data: '"before"', history: KEEP })
      await inboxB.until(1, 'the publication before the restart')
      assert.equal(a.status, 'up')
      await spec.restartBroker!()
      // Down while the broker is away, up again once deliveries are back in place.
      assert.deepEqual(await statusesA.until(2, 'status changes on a'), ['down', 'up'])
      assert.equal(a.status, 'up')
      assert.deepEqual(await gapsA.until(1, 'a gap report on a'), [[channel]])
      assert.deepEqual(
        await gapsB.until(1, 'a gap report on b'),
        [[channel]],
        'only channels still subscribed',
      )
      const afterRestart = await a.publish(channel, { data: '"after"', history: KEEP })
      for (const inbox of [inboxA, inboxB]) {
        const received = await inbox.until(2, 'the publication after the restart')
        const latest = received.at(-1)!
        assert.deepEqual(
          [latest.data, latest.offset, latest.epoch],
          ['"after"', afterRestart.offset, afterRestart.epoch],
        )
      }
      // Recovery reads the history from the position each node last delivered: either it covers
      // the gap, or it says it does not (a new epoch) — never a silent loss.
      const last = inboxB.items[0]!
      const recovered = await b.history(channel, { since: { offset: last.offset, epoch: last.epoch } })
      if (recovered.latest.epoch === last.epoch) {
        assert.equal(recovered.complete, true)
        assert.deepEqual(offsetsOf(recovered.publications), [afterRestart.offset])
      } else assert.equal(recovered.complete, false)
    })

    test('a repeated publication id is published once, from any node, and answered with the first position', async () => {
      const a = await node()
      const b = spec.shared ? await node() : a
      const channel = channelName('dedup')
      const other = channelName('dedup-other')
      const inbox = new Inbox<BusPublication>()
      await b.subscribe(channel, inbox.push)
      const first = await a.publish(channel, { data: '"one"', id: 'client-7:key-1', history: KEEP })
      // The retry comes through the other node (a client that reconnected elsewhere).
      const retried = await b.publish(channel, { data: '"one"', id: 'client-7:key-1', history: KEEP })
      assert.deepEqual(retried, first)
      const again = await a.publish(channel, { data: '"one"', id: 'client-7:key-1' })
      assert.deepEqual(again, first)
      const second = await a.publish(channel, { data: '"two"', id: 'client-7:key-2', history: KEEP })
      const plain = await b.publish(channel, { data: '"three"', history: KEEP })
      assert.deepEqual([second.offset, plain.offset], [first.offset + 1, first.offset + 2])
      // An id is per channel: the same id elsewhere is another publication.
      const elsewhere = await b.publish(other, { data: '"one"', id: 'client-7:key-1', history: KEEP })
      assert.equal(elsewhere.offset, 1)
      const received = await inbox.until(3, 'three publications')
      assert.deepEqual(
        received.map((p) => [p.offset, p.data]),
        [
          [1, '"one"'],
          [2, '"two"'],
          [3, '"three"'],
        ],
      )
      const { publications } = await a.history(channel, {})
      assert.deepEqual(offsetsOf(publications), [1, 2, 3])
      assert.equal(received.length, 3, 'no repeat delivered')
    })

    test('a publication id is forgotten after the bus’s dedupTtl', async () => {
      const a = await node({ dedupTtl: 300 })
      const channel = channelName('dedup-expiry')
      const first = await a.publish(channel, { data: '1', id: 'k', history: KEEP })
      // Only time ends the window: retry the same id until it is published anew (each attempt
      // before that is answered with the first position and publishes nothing).
      let latest = first
      await eventually(async () => {
        latest = await a.publish(channel, { data: '1', id: 'k', history: KEEP })
        if (latest.offset === first.offset) assert.deepEqual(latest, first)
        return latest.offset !== first.offset
      }, 'the id to expire')
      assert.equal(latest.offset, first.offset + 1)
    })

    test('a new bus without a shared broker starts a new epoch', {
      skip: spec.shared && 'buses share the broker’s epochs',
    }, async () => {
      const channel = channelName('epoch-memory')
      const first = await (await node()).publish(channel, { data: '1', history: KEEP })
      const restarted = await node()
      const second = await restarted.publish(channel, { data: '1', history: KEEP })
      assert.equal(second.offset, 1)
      assert.notEqual(second.epoch, first.epoch)
      const result = await restarted.history(channel, { since: first })
      assert.equal(result.complete, false)
    })
  })
}
