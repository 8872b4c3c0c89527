/**
 * The recovery seam as a property: whatever the interleaving of publications, their delivery to
 * the node, and the history reads (when the broker takes its snapshot, when the answer arrives),
 * a client recovering from offset k receives exactly k+1..N, in order, once each — through its
 * reply's publications and the pushes after it — and a client subscribing without recovery gets
 * every offset after its reply's offset, once each. Both kinds of transport: one that shares a
 * broadcast (WebSocket topics) and one that gets each envelope through send (SSE, polling).
 *
 * The bus here is a MemoryBus whose deliveries and history answers wait for the test's schedule.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setImmediate as turn } from 'node:timers/promises'
import fc from 'fast-check'
import type { Bus, BusPublication, HistoryQuery, HistoryResult } from '../../src/pubsub/bus.js'
import { MemoryBus } from '../../src/pubsub/memory-bus.js'
import { type Broadcaster, RealtimeCore } from '../../src/realtime/hub.js'
import {
  DEFAULT_HEARTBEAT,
  DEFAULT_REALTIME_LIMITS,
  RealtimeSession,
  type SessionTransport,
} from '../../src/realtime/session.js'

/** A MemoryBus whose deliveries and history reads happen when the test says. */
class ScheduledBus extends MemoryBus {
  readonly deliveries: (() => void)[] = []
  readonly reads: {
    query: HistoryQuery
    channel: string
    result?: HistoryResult
    resolve: (r: HistoryResult) => void
  }[] = []

  override subscribe(channel: string, deliver: (publication: BusPublication) => void) {
    return super.subscribe(channel, (publication) => this.deliveries.push(() => deliver(publication)))
  }

  override history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    return new Promise((resolve) => this.reads.push({ channel, query, resolve }))
  }

  /** The broker reads its state for the oldest read not yet read. */
  async snapshot(): Promise<boolean> {
    const read = this.reads.find((r) => r.result === undefined)
    if (read === undefined) return false
    read.result = await super.history(read.channel, read.query)
    return true
  }

  /** The oldest read whose state was taken is answered. */
  answer(): boolean {
    const index = this.reads.findIndex((r) => r.result !== undefined)
    if (index === -1) return false
    const [read] = this.reads.splice(index, 1)
    read!.resolve(read!.result!)
    return true
  }

  deliver(): boolean {
    const next = this.deliveries.shift()
    next?.()
    return next !== undefined
  }
}

class RecordingTransport implements SessionTransport {
  readonly kind = 'test'
  readonly envelopes: Record<string, unknown>[] = []
  joinBroadcast?: (channel: string) => void
  leaveBroadcast?: (channel: string) => void

  constructor(broadcast: Map<string, Set<RecordingTransport>> | undefined) {
    if (broadcast !== undefined) {
      this.joinBroadcast = (channel) => {
        let set = broadcast.get(channel)
        if (set === undefined) broadcast.set(channel, (set = new Set()))
        set.add(this)
      }
      this.leaveBroadcast = (channel) => broadcast.get(channel)?.delete(this)
    }
  }

  send(envelope: string): void {
    this.envelopes.push(JSON.parse(envelope) as Record<string, unknown>)
  }

  close(): void {}

  reply(id: number): Record<string, unknown> | undefined {
    return this.envelopes.find((e) => e.id === id)
  }

  /** Offsets the client holds for a channel: the reply's publications, then the pushes after it. */
  offsetsAfterReply(id: number, channel: string): { reply: Record<string, unknown>; offsets: number[] } {
    const index = this.envelopes.findIndex((e) => e.id === id)
    assert.notEqual(index, -1, 'the subscribe was answered')
    const reply = this.envelopes[index]!
    assert.equal(reply.error, undefined, JSON.stringify(reply.error))
    const result = reply.result as { publications?: { offset: number }[] }
    const recovered = (result.publications ?? []).map((p) => p.offset)
    const pushed = this.envelopes
      .slice(index + 1)
      .filter((e) => e.push === 'pub' && e.channel === channel)
      .map((e) => e.offset as number)
    // Nothing for the channel may arrive before the reply.
    assert.equal(
      this.envelopes.slice(0, index).filter((e) => e.push === 'pub').length,
      0,
      'a publication arrived before the subscribe reply',
    )
    return { reply, offsets: [...recovered, ...pushed] }
  }
}

type Step = 'publish' | 'deliver' | 'snapshot' | 'answer' | 'second'

async function settle(): Promise<void> {
  await turn()
  await turn()
}

async function runSchedule(
  shared: boolean,
  before: number,
  since: number,
  steps: readonly Step[],
): Promise<void> {
  const bus = new ScheduledBus()
  const broadcast = new Map<string, Set<RecordingTransport>>()
  const core = new RealtimeCore({
    bus: bus as Bus,
    channels: { 'room:*': { history: { size: 1000, ttl: 3_600_000 } } },
    rpc: {},
    authenticate: undefined,
    limits: { ...DEFAULT_REALTIME_LIMITS },
    heartbeat: { ...DEFAULT_HEARTBEAT },
    presenceRefresh: 60_000,
    onError: (error) => {
      throw error
    },
  })
  const broadcaster: Broadcaster = {
    broadcast(channel, envelope) {
      for (const transport of broadcast.get(channel) ?? []) transport.send(envelope)
    },
  }
  core.broadcasters.add(broadcaster)
  const channel = 'room:1'
  let published = 0
  const publish = async () => {
    published++
    await bus.publish(channel, { data: String(published), history: { size: 1000, ttl: 3_600_000 } })
  }
  for (let i = 0; i < before; i++) await publish()

  const open = (): { session: RealtimeSession; transport: RecordingTransport } => {
    const transport = new RecordingTransport(shared ? broadcast : undefined)
    const session = new RealtimeSession(core, transport, undefined, 0)
    core.opened(session)
    session.receive('{"id":1,"cmd":"connect","version":1}', 0)
    return { session, transport }
  }
  const first = open()
  await settle()
  first.session.receive(
    JSON.stringify({ id: 2, cmd: 'subscribe', channel, since: { offset: since, epoch: bus.epoch } }),
    0,
  )
  let second: { session: RealtimeSession; transport: RecordingTransport } | undefined
  await settle()
  for (const step of steps) {
    if (step === 'publish') await publish()
    else if (step === 'deliver') bus.deliver()
    else if (step === 'snapshot') await bus.snapshot()
    else if (step === 'answer') bus.answer()
    else if (step === 'second' && second === undefined) {
      second = open()
      await settle()
      second.session.receive(JSON.stringify({ id: 2, cmd: 'subscribe', channel }), 0)
    }
    await settle()
  }
  // Let everything still pending happen, in a valid order.
  for (let progress = true; progress; ) {
    progress = (await bus.snapshot()) || bus.answer() || bus.deliver()
    await settle()
  }

  const expected = Array.from({ length: published - since }, (_, i) => since + i + 1)
  const firstView = first.transport.offsetsAfterReply(2, channel)
  assert.equal((firstView.reply.result as { recovered: boolean }).recovered, true)
  assert.deepEqual(firstView.offsets, expected)
  if (second !== undefined) {
    const secondView = second.transport.offsetsAfterReply(2, channel)
    const from = (secondView.reply.result as { offset: number }).offset
    assert.deepEqual(
      secondView.offsets,
      Array.from({ length: published - from }, (_, i) => from + i + 1),
    )
  }
}

describe('realtime server: the recovery seam', () => {
  test('any interleaving gives exactly the missed publications then the live ones, once each', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 4 }),
        fc.array(fc.constantFrom<Step>('publish', 'deliver', 'snapshot', 'answer', 'second'), {
          maxLength: 40,
        }),
        async (shared, before, sinceSeed, steps) => {
          await runSchedule(shared, before, Math.min(sinceSeed, before), steps)
        },
      ),
      { numRuns: 300 },
    )
  })

  test('a read that saw publications the node has not been delivered yet does not repeat them', async () => {
    // The history snapshot includes 3 and 4 before the node got their deliveries: the session
    // waits in catch-up and must not get them twice when the deliveries arrive.
    await runSchedule(true, 2, 0, [
      'snapshot',
      'answer',
      'publish',
      'publish',
      'snapshot',
      'answer',
      'deliver',
    ])
    await runSchedule(false, 2, 0, [
      'snapshot',
      'answer',
      'publish',
      'publish',
      'snapshot',
      'answer',
      'deliver',
    ])
  })
})
