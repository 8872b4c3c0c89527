/**
 * The session without sockets or timers: envelopes in, envelopes out, time passed in. The same
 * object a WebSocket drives will be driven by SSE and long polling; here a recording transport
 * and explicit clock values show its timing rules exactly.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setImmediate as turn } from 'node:timers/promises'
import { MemoryBus } from '../../src/pubsub/memory-bus.js'
import { RealtimeCore } from '../../src/realtime/hub.js'
import {
  DEFAULT_REALTIME_LIMITS,
  type RealtimeLimits,
  RealtimeSession,
  type SessionTransport,
} from '../../src/realtime/session.js'

class Recorder implements SessionTransport {
  readonly kind = 'test'
  readonly sent: Record<string, unknown>[] = []
  closedWith: number | undefined
  send(envelope: string): void {
    this.sent.push(JSON.parse(envelope) as Record<string, unknown>)
  }
  close(code: number): void {
    this.closedWith = code
  }
  pushes(name: string): Record<string, unknown>[] {
    return this.sent.filter((e) => e.push === name)
  }
}

function setup(limits: Partial<RealtimeLimits> = {}, rpc: Record<string, () => unknown> = {}) {
  const core = new RealtimeCore({
    bus: new MemoryBus(),
    channels: { 'room:*': { publish: true } },
    rpc,
    authenticate: undefined,
    limits: { ...DEFAULT_REALTIME_LIMITS, ...limits },
    heartbeat: { interval: 1000, timeout: 500 },
    presenceRefresh: 60_000,
    onError: () => {},
  })
  const transport = new Recorder()
  const session = new RealtimeSession(core, transport, undefined, 0)
  core.opened(session)
  return { core, transport, session }
}

async function connect(session: RealtimeSession): Promise<void> {
  session.receive('{"id":1,"cmd":"connect","version":1}', 0)
  await turn()
}

describe('realtime session (sans-I/O)', () => {
  test('pings every interval; silence for the timeout after a ping disconnects with 4002', async () => {
    const { session, transport } = setup()
    await connect(session)
    session.tick(999)
    assert.equal(transport.pushes('ping').length, 0)
    session.tick(1000)
    assert.equal(transport.pushes('ping').length, 1)
    session.tick(1499)
    assert.equal(transport.closedWith, undefined)
    session.tick(1500)
    assert.equal(transport.closedWith, 4002)
    assert.deepEqual(transport.pushes('disconnect'), [
      { push: 'disconnect', code: 4002, reason: 'heartbeat timeout', reconnect: true },
    ])
  })

  test('a pong (or any message) after a ping keeps the session', async () => {
    const { session, transport } = setup()
    await connect(session)
    session.tick(1000)
    session.receive('{"cmd":"pong"}', 1400)
    session.tick(1600)
    session.tick(1999)
    assert.equal(transport.closedWith, undefined)
    session.tick(2000)
    assert.equal(transport.pushes('ping').length, 2)
    session.receive('{"id":5,"cmd":"presence_count","channel":"nowhere"}', 2100)
    session.tick(2600)
    assert.equal(transport.closedWith, undefined)
  })

  test('no connect within the connect timeout: 4004', () => {
    const { session, transport } = setup({ connectTimeout: 300 })
    session.tick(299)
    assert.equal(transport.closedWith, undefined)
    session.tick(300)
    assert.equal(transport.closedWith, 4004)
  })

  test('an RPC deadline is kept by tick: 114 at the deadline, the late result dropped', async () => {
    let finish: (value: string) => void = () => {}
    const { session, transport } = setup(
      { rpcTimeout: 200 },
      {
        slow: () => new Promise<string>((resolve) => (finish = resolve)),
      },
    )
    await connect(session)
    session.receive('{"id":2,"cmd":"rpc","method":"slow"}', 100)
    await turn()
    session.tick(299)
    assert.equal(transport.sent.filter((e) => e.id === 2).length, 0)
    session.tick(300)
    assert.deepEqual(transport.sent.find((e) => e.id === 2)?.error, {
      code: 114,
      message: 'no result within 200 ms',
      temporary: true,
    })
    finish('too late')
    await turn()
    assert.equal(transport.sent.filter((e) => e.id === 2).length, 1)
  })

  test('RPCs that never settle do not use up the connection: each times out and frees its slot', async () => {
    const { session, transport } = setup(
      { rpcTimeout: 100, pendingRpcs: 1, pendingCommands: 2 },
      {
        never: () => new Promise(() => {}),
      },
    )
    await connect(session)
    let now = 0
    for (let id = 10; id < 15; id++) {
      session.receive(JSON.stringify({ id, cmd: 'rpc', method: 'never' }), now)
      await turn()
      now += 100
      session.tick(now)
      assert.equal(
        (transport.sent.find((e) => e.id === id)?.error as { code: number })?.code,
        114,
        `rpc ${id}`,
      )
    }
  })

  test('rate limits refill with the time passed in', async () => {
    const { session, transport } = setup({ publishRate: 1 })
    await connect(session)
    for (let id = 10; id < 13; id++)
      session.receive(JSON.stringify({ id, cmd: 'publish', channel: 'room:r', data: id }), 0)
    await turn()
    await turn()
    const codes = [10, 11, 12].map(
      (id) => (transport.sent.find((e) => e.id === id)?.error as { code: number })?.code,
    )
    assert.deepEqual(codes, [undefined, undefined, 111], 'a burst of twice the rate, then refused')
    session.receive(JSON.stringify({ id: 13, cmd: 'publish', channel: 'room:r', data: 13 }), 999)
    session.receive(JSON.stringify({ id: 14, cmd: 'publish', channel: 'room:r', data: 14 }), 1000)
    await turn()
    await turn()
    assert.equal((transport.sent.find((e) => e.id === 13)?.error as { code: number })?.code, 111)
    assert.equal(transport.sent.find((e) => e.id === 14)?.error, undefined)
  })
})
