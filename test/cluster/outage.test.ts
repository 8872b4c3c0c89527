/**
 * One node whose bus loses its broker (a MemoryBus told to report `down`, so that the test
 * controls the outage): within the grace nothing happens; after it, every session is sent away
 * with 4001 and the reason, and new WebSocket upgrades and HTTP transport opens are answered 503
 * with Retry-After until the bus is up again. Over real sockets; the cluster tests do the same
 * with real brokers and the fault proxy.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { MemoryBus } from '../../src/pubsub/memory-bus.js'
import { BUS_OUTAGE_REASON } from '../../src/realtime/bus-outage.js'
import { createRealtime, listenTransports, type Realtime } from '../../src/realtime/index.js'
import { PROTOCOL_VERSION } from '../../src/realtime/protocol.js'
import { upgradeRequest } from '../adapters/helpers.js'
import { RawClient } from '../realtime/server-helpers.js'

/** A MemoryBus whose status the test sets, as a broker bus's connection would. */
class SwitchedBus extends MemoryBus {
  set(status: 'up' | 'down'): void {
    this.signalStatus(status)
  }
}

describe('a node whose bus is down', () => {
  const bus = new SwitchedBus()
  let realtime: Realtime
  let port: number
  let close: () => Promise<void>

  before(async () => {
    realtime = createRealtime({
      bus,
      channels: { 'feed:*': { history: { size: 10, ttl: 60_000 } } },
      busOutageGrace: 200,
      onError: () => {},
    })
    const served = await listenTransports(realtime, { port: 0, host: '127.0.0.1', path: '/realtime' })
    port = served.port
    close = async () => {
      await realtime.close()
      await served.close()
    }
  })
  after(() => close())

  const openSession = (transport: string) =>
    fetch(`http://127.0.0.1:${port}/realtime/open`, {
      method: 'POST',
      headers: { 'x-rally-transport': transport },
    })

  test('sends its sessions away with 4001 after the grace, refuses new ones with 503, and takes them back once up', async () => {
    const connected = async () => {
      const raw = new RawClient(`ws://127.0.0.1:${port}/realtime`)
      await raw.opened
      await raw.request('connect', { version: PROTOCOL_VERSION })
      return raw
    }
    const first = await connected()
    const downAt = Date.now()
    bus.set('down')
    assert.equal(realtime.busOutage.refusing, false, 'a short outage is waited out')
    const push = await first.next((e) => e.push === 'disconnect', 5000, 'the disconnect push')
    assert.ok(Date.now() - downAt >= 200, 'not before the grace')
    assert.deepEqual(
      { code: push.code, reason: push.reason, reconnect: push.reconnect },
      { code: 4001, reason: BUS_OUTAGE_REASON, reconnect: true },
    )
    assert.deepEqual(await first.whenClosed(5000), { code: 4001, reason: BUS_OUTAGE_REASON })
    assert.equal(realtime.clients.size, 0)
    assert.equal(realtime.busOutage.refusing, true)

    // New sessions: refused before the upgrade, and on the HTTP transports' open.
    const upgrade = await upgradeRequest(port, '/realtime', { 'Sec-WebSocket-Protocol': 'rally.v1' })
    assert.equal(upgrade.kind, 'response')
    assert.equal(upgrade.status, 503)
    assert.equal(upgrade.headers['retry-after'], '1')
    assert.match(upgrade.kind === 'response' ? upgrade.body : '', /lost its broker/)
    const open = await openSession('sse')
    assert.equal(open.status, 503)
    assert.equal(open.headers.get('retry-after'), '1')
    assert.deepEqual(await open.json(), { error: BUS_OUTAGE_REASON, advice: 'reconnect' })

    // The broker is back: sessions are welcome again.
    bus.set('up')
    assert.equal(realtime.busOutage.refusing, false)
    const again = await connected()
    assert.equal(realtime.clients.size, 1)
    again.ws.close()
    const reopened = await openSession('long-polling')
    assert.equal(reopened.status, 200)
    await reopened.body?.cancel()
  })
})
