/**
 * A subscriber that stops reading, over a real socket: a raw TCP client speaks rally.v1 (connect,
 * subscribe), then never reads again while the server publishes 16 KiB publications. Once its
 * queue passes `maxBackpressure`, the realtime layer's policy applies: by default the client is
 * told why (the `disconnect` push 4003, slow consumer) just before the close with the same code;
 * the app may choose the server's bare 1008 instead. Both on `realtime.listen` and on a Hono
 * route (`mountRealtime`), whose server has its own policy for its other routes.
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, test } from 'node:test'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createNodeWebSocket, mountRealtime } from '../../src/adapters/hono/index.js'
import type { BackpressurePolicy } from '../../src/index.js'
import { createRealtime, type Realtime } from '../../src/realtime/index.js'
import { turn } from '../support/timing.js'
import { RawClient as RawTcpClient } from '../topics/helpers.js'
import { within } from './server-helpers.js'

const MAX_BACKPRESSURE = 256 * 1024
const FILLER = 'x'.repeat(16 * 1024)
/** 64 MiB at most: far more than the kernel buffers of a stalled loopback connection hold. */
const MAX_PUBLICATIONS = 4096

const cleanups: (() => Promise<void>)[] = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

function newRealtime(): Realtime {
  const realtime = createRealtime({ channels: { 'feed:*': {} }, onError: () => {} })
  cleanups.push(() => realtime.close())
  return realtime
}

function textOf(frame: { payload: Buffer }): Record<string, unknown> {
  return JSON.parse(frame.payload.toString('utf8')) as Record<string, unknown>
}

/** A rally.v1 session subscribed to feed:x that then stops reading. */
async function stalledSubscriber(port: number, path: string): Promise<RawTcpClient> {
  const raw = await RawTcpClient.connect(port, path, ['Sec-WebSocket-Protocol: rally.v1'])
  cleanups.push(async () => raw.destroy())
  raw.sendFrame(1, JSON.stringify({ id: 1, cmd: 'connect', version: 1 }))
  raw.sendFrame(1, JSON.stringify({ id: 2, cmd: 'subscribe', channel: 'feed:x' }))
  await raw.waitFor(
    () => raw.frames.find((frame) => frame.opcode === 1 && textOf(frame).id === 2),
    5000,
    'the subscribe reply',
  )
  raw.socket.pause()
  return raw
}

/** Publishes until the server has applied its policy to the stalled socket; then reads again. */
async function overflow(realtime: Realtime, raw: RawTcpClient, closes: () => number): Promise<void> {
  for (let i = 0; i < MAX_PUBLICATIONS && closes() === 0; i++) {
    await realtime.publish('feed:x', FILLER)
    // Now and then a full turn, so that the writes of the turn go out as they would in an app.
    if (i % 8 === 7) await turn()
  }
  assert.equal(closes(), 1, 'the stalled socket went over maxBackpressure')
  raw.socket.resume()
}

/** The close frame's code, and the text message just before it. */
async function ending(raw: RawTcpClient): Promise<{ code: number; last: Record<string, unknown> }> {
  const close = await raw.waitFor(
    () => raw.frames.findIndex((frame) => frame.opcode === 8) + 1 || undefined,
    15_000,
    'the close frame',
  )
  const closeFrame = raw.frames[close - 1]!
  const before = raw.frames[close - 2]!
  assert.equal(before.opcode, 1)
  return { code: closeFrame.payload.readUInt16BE(0), last: textOf(before) }
}

async function listening(
  realtime: Realtime,
  policy?: BackpressurePolicy,
): Promise<{ port: number; closes: () => number }> {
  const server = await realtime.listen({
    port: 0,
    host: '127.0.0.1',
    path: '/rt',
    maxBackpressure: MAX_BACKPRESSURE,
    closeTimeout: 10_000,
    ...(policy === undefined ? {} : { backpressurePolicy: policy }),
  })
  return { port: server.port!, closes: () => server.stats().backpressureCloses }
}

async function honoRoute(
  realtime: Realtime,
  policy?: BackpressurePolicy,
): Promise<{ port: number; closes: () => number }> {
  const app = new Hono()
  // The Hono server's own policy, for its other routes: dropping, the server's default.
  const nodeWebSocket = createNodeWebSocket({
    app,
    maxBackpressure: MAX_BACKPRESSURE,
    backpressurePolicy: 'drop',
    closeTimeout: 10_000,
  })
  mountRealtime(
    app,
    realtime,
    nodeWebSocket,
    '/rt',
    policy === undefined ? {} : { backpressurePolicy: policy },
  )
  const server = await within(
    new Promise<Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
        resolve(s as Server),
      ) as Server
    }),
    3000,
    'serve',
  )
  nodeWebSocket.injectWebSocket(server)
  cleanups.push(async () => {
    await nodeWebSocket.rally.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    port: (server.address() as AddressInfo).port,
    closes: () => nodeWebSocket.rally.stats().backpressureCloses,
  }
}

describe('realtime: a subscriber that stops reading', () => {
  test('realtime.listen: the disconnect push 4003 (slow consumer), then the close with 4003', async () => {
    const realtime = newRealtime()
    const { port, closes } = await listening(realtime)
    const raw = await stalledSubscriber(port, '/rt')
    await overflow(realtime, raw, closes)
    const { code, last } = await ending(raw)
    assert.deepEqual(last, { push: 'disconnect', code: 4003, reason: 'slow consumer', reconnect: true })
    assert.equal(code, 4003)
    // Every publication before the push arrived whole and in order: a cut, not a gap.
    const offsets = raw.frames
      .filter((f) => f.opcode === 1 && textOf(f).push === 'pub')
      .map((f) => textOf(f).offset)
    assert.ok(offsets.length > 0)
    assert.deepEqual(
      offsets,
      offsets.map((_, i) => i + 1),
    )
  })

  test("realtime.listen({ backpressurePolicy: 'close' }): a bare 1008, as the app chose", async () => {
    const realtime = newRealtime()
    const { port, closes } = await listening(realtime, 'close')
    const raw = await stalledSubscriber(port, '/rt')
    await overflow(realtime, raw, closes)
    const { code, last } = await ending(raw)
    assert.equal(code, 1008)
    assert.equal(last.push, 'pub')
  })

  test("mountRealtime on a Hono server whose policy is 'drop': the route's sockets still get 4003", async () => {
    const realtime = newRealtime()
    const { port, closes } = await honoRoute(realtime)
    const raw = await stalledSubscriber(port, '/rt')
    await overflow(realtime, raw, closes)
    const { code, last } = await ending(raw)
    assert.deepEqual(last, { push: 'disconnect', code: 4003, reason: 'slow consumer', reconnect: true })
    assert.equal(code, 4003)
  })

  test("mountRealtime(…, { backpressurePolicy: 'close' }): the route's sockets close with 1008", async () => {
    const realtime = newRealtime()
    const { port, closes } = await honoRoute(realtime, 'close')
    const raw = await stalledSubscriber(port, '/rt')
    await overflow(realtime, raw, closes)
    const { code, last } = await ending(raw)
    assert.equal(code, 1008)
    assert.equal(last.push, 'pub')
  })
})
