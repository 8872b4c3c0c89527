/**
 * One publish, many compression settings: subscribers without permessage-deflate, with it and no
 * context takeover, with a smaller server window, and with context takeover each get a variant
 * they can decode. Sockets with the same settings share one compressed frame, byte for byte (a
 * raw client compares them), and each variant is compressed once per publish.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, describe, it, mock } from 'node:test'
import {
  createServer,
  type RallyServer,
  type ServerWebSocket,
  type WebSocketOptions,
} from '../../src/index.js'
import { DeflateCodec } from '../../src/node/deflate.js'
import type { PerMessageDeflateOptions } from '../../src/protocol/extensions/permessage-deflate.js'
import {
  decodeFrames,
  inflateMessage,
  isCompressed,
  openPeers,
  type Peer,
  prng,
  RawClient,
  until,
  within,
} from './helpers.js'

const COUNT = 20
const SIZE = 4096

/**
 * A compressible 4 KiB message whose repeats are 2 KiB apart: a compressor with a 32 KiB window
 * refers back 2 KiB, one with a 1 KiB window (server_max_window_bits=10) cannot — so a variant
 * made for the wrong window is caught by the peer's inflater.
 */
function payload(seq: number): string {
  const random = prng(1000 + seq)
  let block = ''
  while (block.length < SIZE / 2) block += String.fromCharCode(97 + Math.floor(random() * 26))
  const head = `${seq}:`
  return (head + block + block).slice(0, SIZE)
}

const cleanups: (() => Promise<void>)[] = []
after(async () => {
  mock.restoreAll()
  for (const cleanup of cleanups.reverse()) await cleanup()
})

interface Variant {
  name: string
  client: WebSocketOptions['perMessageDeflate']
  /** What the negotiated extension must (and must not) say, or '' for none. */
  extension: RegExp | ''
  takeover: boolean
}

async function run(serverDeflate: boolean | PerMessageDeflateOptions, variants: Variant[]) {
  const sockets: ServerWebSocket<{ variant: string }>[] = []
  const server: RallyServer<{ variant: string }> = createServer<{ variant: string }>({
    port: 0,
    host: '127.0.0.1',
    heartbeat: false,
    perMessageDeflate: serverDeflate,
    upgrade: (request) => ({
      variant: new URL(request.url ?? '/', 'http://x').searchParams.get('v') ?? 'raw',
    }),
    open(ws) {
      sockets.push(ws)
      ws.subscribe('news')
    },
  })
  await within(server.ready(), 3000, 'the server to listen')
  const port = server.port!
  const peers = new Map<string, Peer[]>()
  const allPeers: Peer[] = []
  cleanups.push(async () => {
    for (const peer of allPeers) peer.ws.terminate()
    await within(server.close(), 10_000, 'server close')
  })
  for (const variant of variants) {
    // Two clients per variant: they must share the variant's frame.
    const opened = await openPeers((i) => `ws://127.0.0.1:${port}/?v=${variant.name}&i=${i}`, 2, {
      perMessageDeflate: variant.client,
    })
    peers.set(variant.name, opened)
    allPeers.push(...opened)
  }
  await until(() => sockets.length === variants.length * 2, 3000, 'every server socket')
  return { server, port, sockets, peers, allPeers }
}

function checkNegotiation(
  variants: Variant[],
  peers: Map<string, Peer[]>,
  sockets: ServerWebSocket<{ variant: string }>[],
) {
  for (const variant of variants) {
    for (const peer of peers.get(variant.name)!) {
      if (variant.extension === '') assert.equal(peer.ws.extensions, '', variant.name)
      else assert.match(peer.ws.extensions, variant.extension, variant.name)
      assert.equal(
        /server_no_context_takeover/.test(peer.ws.extensions),
        variant.extension !== '' && !variant.takeover,
        `${variant.name}: ${peer.ws.extensions}`,
      )
    }
    for (const ws of sockets.filter((s) => s.data.variant === variant.name)) {
      assert.equal(ws.extensions, peers.get(variant.name)![0]!.ws.extensions, variant.name)
    }
  }
}

async function publishAndCheck(server: RallyServer<{ variant: string }>, allPeers: Peer[]): Promise<void> {
  for (let seq = 0; seq < COUNT; seq++) server.publish('news', payload(seq))
  await until(
    () => allPeers.every((peer) => peer.messages.length >= COUNT || peer.closed),
    10_000,
    'every message on every client',
  )
  for (const peer of allPeers) {
    assert.equal(peer.closed, false, `client ${peer.ws.url} (${peer.ws.extensions}) was closed`)
    assert.equal(peer.messages.length, COUNT)
    for (let seq = 0; seq < COUNT; seq++) {
      if (peer.messages[seq] !== payload(seq)) assert.fail(`${peer.ws.extensions}: message ${seq} is wrong`)
    }
  }
}

describe('mixed compression parameters on one topic', () => {
  it('server default (no context takeover): off, default, server_max_window_bits 10 and 9', async () => {
    const variants: Variant[] = [
      { name: 'off', client: false, extension: '', takeover: false },
      { name: 'default', client: true, extension: /^permessage-deflate/, takeover: false },
      {
        name: 'w10',
        client: { serverMaxWindowBits: 10 },
        extension: /server_max_window_bits=10/,
        takeover: false,
      },
      {
        name: 'w9',
        client: { serverMaxWindowBits: 9 },
        extension: /server_max_window_bits=9/,
        takeover: false,
      },
    ]
    const { server, sockets, peers, allPeers } = await run(true, variants)
    checkNegotiation(variants, peers, sockets)
    const compress = mock.method(DeflateCodec.prototype, 'compress')
    try {
      await publishAndCheck(server, allPeers)
      // One compression per publish per window size, however many sockets share it: 3 variants.
      assert.equal(compress.mock.callCount(), COUNT * 3)
    } finally {
      compress.mock.restore()
    }
  })

  it('server with context takeover: a client that does not ask otherwise gets takeover', async () => {
    const variants: Variant[] = [
      { name: 'off', client: false, extension: '', takeover: false },
      {
        name: 'shared',
        client: { serverNoContextTakeover: true },
        extension: /server_no_context_takeover/,
        takeover: false,
      },
      {
        name: 'shared-w10',
        client: { serverNoContextTakeover: true, serverMaxWindowBits: 10 },
        extension: /server_max_window_bits=10/,
        takeover: false,
      },
      { name: 'takeover', client: true, extension: /^permessage-deflate/, takeover: true },
      {
        name: 'takeover-w10',
        client: { serverMaxWindowBits: 10 },
        extension: /server_max_window_bits=10/,
        takeover: true,
      },
    ]
    const { server, sockets, peers, allPeers } = await run({ serverNoContextTakeover: false }, variants)
    checkNegotiation(variants, peers, sockets)
    const compress = mock.method(DeflateCodec.prototype, 'compress')
    try {
      await publishAndCheck(server, allPeers)
      // Two shared variants compressed once each; four takeover sockets compress for themselves.
      assert.equal(compress.mock.callCount(), COUNT * (2 + 4))
    } finally {
      compress.mock.restore()
    }
  })

  it('raw clients with the same parameters receive the very same compressed bytes', async () => {
    const { server, port } = await run({ serverNoContextTakeover: false }, [])
    const offer = 'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover'
    const a = await RawClient.connect(port, '/?v=raw-a', [offer])
    const b = await RawClient.connect(port, '/?v=raw-b', [offer])
    const small = await RawClient.connect(port, '/?v=raw-w10', [`${offer}; server_max_window_bits=10`])
    cleanups.push(async () => {
      for (const raw of [a, b, small]) raw.destroy()
    })
    for (const raw of [a, b]) {
      assert.match(raw.head, /^HTTP\/1\.1 101/)
      assert.match(raw.head, /server_no_context_takeover/)
    }
    assert.match(small.head, /server_max_window_bits=10/)
    await until(() => server.subscriberCount('news') === 3, 3000, 'three subscribers')

    for (let seq = 0; seq < COUNT; seq++) server.publish('news', payload(seq))
    await until(
      () => [a, b, small].every((raw) => raw.frames.length >= COUNT),
      10_000,
      'every frame on the raw clients',
    )
    for (let seq = 0; seq < COUNT; seq++) {
      const fa = a.frames[seq]!
      assert.ok(isCompressed(fa), `frame ${seq} is compressed`)
      assert.ok(fa.bytes.length < SIZE * 0.75, `frame ${seq} is smaller than the message`)
      assert.ok(Buffer.compare(fa.bytes, b.frames[seq]!.bytes) === 0, `frame ${seq} is the same for both`)
    }
    assert.deepEqual(
      await decodeFrames(a.frames, false),
      Array.from({ length: COUNT }, (_, seq) => payload(seq)),
    )
    // The 10-bit client got a variant of its own, which it can inflate...
    assert.deepEqual(
      small.frames.map((f) => inflateMessage(f.payload, 10)),
      Array.from({ length: COUNT }, (_, seq) => payload(seq)),
    )
    // ...made with a 1 KiB window: it cannot refer back to the repeat 2 KiB earlier, so it is
    // much larger than the 32 KiB-window variant, which can. (zlib's inflater does not enforce
    // the window size within one message, so the sizes are what tell the variants apart.)
    for (let seq = 0; seq < COUNT; seq++) {
      const wide = a.frames[seq]!.bytes.length
      const narrow = small.frames[seq]!.bytes.length
      assert.ok(narrow > wide * 1.5, `frame ${seq}: 10-bit variant ${narrow} bytes, 15-bit ${wide} bytes`)
    }
  })
})
