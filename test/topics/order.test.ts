/**
 * Order on one socket of `ws.send` and `server.publish` calls, interleaved: the client sees
 * exactly the call order — also with permessage-deflate, where small messages go uncompressed,
 * medium ones are compressed on the spot and large ones (over 64 KiB) off the event loop, and
 * with context takeover, where a published message is compressed by the socket's own codec.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, describe, it } from 'node:test'
import { createServer, type RallyServer, type ServerWebSocket } from '../../src/index.js'
import type { PerMessageDeflateOptions } from '../../src/protocol/extensions/permessage-deflate.js'
import {
  decodeFrames,
  isCompressed,
  openPeers,
  type Peer,
  prng,
  RawClient,
  turn,
  until,
  within,
} from './helpers.js'

type Kind = 'send-small' | 'send-medium' | 'send-large' | 'pub-small' | 'pub-medium' | 'pub-large'

const SIZES = { small: 40, medium: 8 * 1024, large: 200 * 1024 }
const KINDS: Kind[] = ['send-small', 'send-medium', 'send-large', 'pub-small', 'pub-medium', 'pub-large']

/** A message that says its number and kind, padded to size with compressible text. */
function message(seq: number, kind: Kind): string {
  const size = SIZES[kind.split('-')[1] as keyof typeof SIZES]
  const head = `${seq}|${kind}|`
  return head + 'abcdefgh'.repeat(Math.ceil(size / 8)).slice(0, Math.max(0, size - head.length))
}

const cleanups: (() => Promise<void>)[] = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

async function scenario(
  deflate: boolean | PerMessageDeflateOptions,
  clientDeflate: boolean | PerMessageDeflateOptions,
  seed: number,
): Promise<{ peers: Peer[]; kinds: Kind[]; sockets: ServerWebSocket<undefined>[] }> {
  const sockets: ServerWebSocket<undefined>[] = []
  const server: RallyServer<undefined> = createServer({
    port: 0,
    host: '127.0.0.1',
    heartbeat: false,
    perMessageDeflate: deflate,
    // About 20 MiB per socket (a third of 300 messages are 200 KiB) are sent mostly in one turn,
    // and may wait for compression: bytes that count against maxBackpressure (16 MiB by default).
    maxBackpressure: 64 * 1024 * 1024,
    open(ws) {
      sockets.push(ws)
      ws.subscribe('t')
    },
  })
  await within(server.ready(), 3000, 'the server to listen')
  const peers = await openPeers(() => `ws://127.0.0.1:${server.port}/`, 3, {
    perMessageDeflate: clientDeflate,
    maxPayload: 1024 * 1024,
  })
  cleanups.push(async () => {
    for (const peer of peers) peer.ws.terminate()
    await within(server.close(), 10_000, 'server close')
  })
  await until(() => sockets.length === 3, 3000, 'three server sockets')

  const random = prng(seed)
  const kinds: Kind[] = []
  const TOTAL = 300
  for (let seq = 0; seq < TOTAL; seq++) {
    const kind = KINDS[Math.floor(random() * KINDS.length)]!
    kinds.push(kind)
    const text = message(seq, kind)
    if (kind.startsWith('pub')) server.publish('t', text)
    else for (const ws of sockets) ws.send(text)
    // Mostly within one turn, sometimes across turns.
    if (random() < 0.1) await turn()
  }
  await until(
    () => peers.every((peer) => peer.messages.length >= TOTAL),
    20_000,
    () => `all ${TOTAL} messages (got ${peers.map((p) => p.messages.length).join(', ')})`,
  )
  return { peers, kinds, sockets }
}

function assertCallOrder(peers: Peer[], kinds: Kind[]): void {
  for (const [p, peer] of peers.entries()) {
    assert.equal(peer.messages.length, kinds.length)
    const seen = peer.messages.map((m) => m.slice(0, m.indexOf('|', m.indexOf('|') + 1)))
    const expected = kinds.map((kind, seq) => `${seq}|${kind}`)
    assert.deepEqual(seen, expected, `peer ${p} saw the call order`)
    for (const [seq, kind] of kinds.entries()) {
      if (peer.messages[seq] !== message(seq, kind)) assert.fail(`peer ${p}: message ${seq} corrupted`)
    }
  }
}

describe('send and publish keep their call order on each socket', () => {
  it('without compression', async () => {
    const { peers, kinds } = await scenario(false, false, 1)
    assertCallOrder(peers, kinds)
  })

  it('with permessage-deflate, no context takeover (publish compressed once, large ones async)', async () => {
    const { peers, kinds, sockets } = await scenario(true, true, 2)
    assert.match(sockets[0]!.extensions, /server_no_context_takeover/)
    assertCallOrder(peers, kinds)
  })

  it('with permessage-deflate, no context takeover, incompressible large messages (inflated off the event loop)', async () => {
    // Over 64 KiB even once compressed: the client inflates them in the thread pool, and the
    // small messages behind them must wait their turn.
    const sockets: ServerWebSocket<undefined>[] = []
    const server = createServer({
      port: 0,
      host: '127.0.0.1',
      heartbeat: false,
      perMessageDeflate: true,
      open(ws) {
        sockets.push(ws)
        ws.subscribe('t')
      },
    })
    await within(server.ready(), 3000, 'the server to listen')
    const peers = await openPeers(() => `ws://127.0.0.1:${server.port}/`, 2, {
      perMessageDeflate: true,
      maxPayload: 1024 * 1024,
    })
    cleanups.push(async () => {
      for (const peer of peers) peer.ws.terminate()
      await within(server.close(), 10_000, 'server close')
    })
    await until(() => sockets.length === 2, 3000, 'two server sockets')
    const random = prng(5)
    const noise = Buffer.from(Array.from({ length: 120 * 1024 }, () => Math.floor(random() * 256))).toString(
      'base64',
    )
    const expected: string[] = []
    for (let seq = 0; seq < 40; seq++) {
      const text = `${seq}|${seq % 2 === 0 ? noise.slice(seq) : 'small'}`
      expected.push(text)
      if (seq % 4 < 2) server.publish('t', text)
      else for (const ws of sockets) ws.send(text)
    }
    await until(() => peers.every((p) => p.messages.length >= 40), 20_000, 'forty messages')
    for (const [p, peer] of peers.entries()) {
      assert.deepEqual(
        peer.messages.map((m) => m.slice(0, m.indexOf('|'))),
        expected.map((m) => m.slice(0, m.indexOf('|'))),
        `peer ${p} saw the call order`,
      )
    }
  })

  it('with permessage-deflate and context takeover (each socket compresses for itself)', async () => {
    const { peers, kinds, sockets } = await scenario({ serverNoContextTakeover: false }, true, 3)
    assert.match(sockets[0]!.extensions, /^permessage-deflate/)
    assert.doesNotMatch(sockets[0]!.extensions, /server_no_context_takeover/)
    assertCallOrder(peers, kinds)
  })

  it('with context takeover, the frames on the wire are in call order (raw client)', async () => {
    // The server side alone: a raw client reads the frames as written and inflates them in
    // arrival order with one inflater, as RFC 7692 context takeover requires.
    const sockets: ServerWebSocket<undefined>[] = []
    const server = createServer({
      port: 0,
      host: '127.0.0.1',
      heartbeat: false,
      perMessageDeflate: { serverNoContextTakeover: false },
      open(ws) {
        sockets.push(ws)
        ws.subscribe('t')
      },
    })
    await within(server.ready(), 3000, 'the server to listen')
    const raw = await RawClient.connect(server.port!, '/', ['Sec-WebSocket-Extensions: permessage-deflate'])
    cleanups.push(async () => {
      raw.destroy()
      await within(server.close(), 10_000, 'server close')
    })
    assert.match(raw.head, /permessage-deflate/)
    assert.doesNotMatch(raw.head, /server_no_context_takeover/)
    await until(() => sockets.length === 1, 3000, 'the server socket')
    const random = prng(4)
    const kinds: Kind[] = []
    const TOTAL = 200
    for (let seq = 0; seq < TOTAL; seq++) {
      const kind = KINDS[Math.floor(random() * KINDS.length)]!
      kinds.push(kind)
      if (kind.startsWith('pub')) server.publish('t', message(seq, kind))
      else sockets[0]!.send(message(seq, kind))
      if (random() < 0.1) await turn()
    }
    await until(
      () => raw.frames.length >= TOTAL,
      20_000,
      () => `${TOTAL} frames (got ${raw.frames.length})`,
    )
    assert.ok(raw.frames.some(isCompressed) && !raw.frames.every(isCompressed), 'both kinds of frame')
    const decoded = await decodeFrames(raw.frames, true)
    assert.equal(decoded.length, TOTAL)
    for (const [seq, kind] of kinds.entries()) {
      if (decoded[seq] !== message(seq, kind)) {
        assert.fail(`frame ${seq}: expected ${seq}|${kind}, got ${decoded[seq]!.slice(0, 24)}`)
      }
    }
  })

  it('with compress: false / true forced per call', async () => {
    const sockets: ServerWebSocket<undefined>[] = []
    const server = createServer({
      port: 0,
      host: '127.0.0.1',
      heartbeat: false,
      perMessageDeflate: true,
      open(ws) {
        sockets.push(ws)
        ws.subscribe('t')
      },
    })
    await within(server.ready(), 3000, 'the server to listen')
    const peers = await openPeers(() => `ws://127.0.0.1:${server.port}/`, 2, { perMessageDeflate: true })
    cleanups.push(async () => {
      for (const peer of peers) peer.ws.terminate()
      await within(server.close(), 10_000, 'server close')
    })
    await until(() => sockets.length === 2, 3000, 'two server sockets')
    const expected: string[] = []
    for (let seq = 0; seq < 60; seq++) {
      const big = seq % 4 === 0
      const text = `${seq}:${'z'.repeat(big ? 100 * 1024 : 2000)}`
      const compress = seq % 3 === 0 ? undefined : seq % 3 === 1
      if (seq % 2 === 0) server.publish('t', text, { compress })
      else for (const ws of sockets) ws.send(text, { compress })
      expected.push(text)
    }
    await until(() => peers.every((p) => p.messages.length >= 60), 10_000, 'sixty messages')
    for (const peer of peers) {
      assert.equal(peer.messages.length, 60)
      for (let i = 0; i < 60; i++)
        if (peer.messages[i] !== expected[i]) assert.fail(`message ${i} out of order`)
    }
  })
})
