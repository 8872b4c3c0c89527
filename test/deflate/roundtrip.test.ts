/**
 * Compressed round trips between a Rally client and a Rally echo server over real sockets, for
 * every window size (8-15, both directions), with and without context takeover, text and binary,
 * compressible and random data. A counting TCP proxy sits in between to show that compressible
 * data really travels compressed.
 */
import assert from 'node:assert/strict'
import type { Buffer } from 'node:buffer'
import net from 'node:net'
import { after, describe, test } from 'node:test'
import type { CloseEvent } from '../../src/index.js'
import type { PerMessageDeflateOptions } from '../../src/protocol/extensions/permessage-deflate.js'
import {
  compressibleBytes,
  compressibleText,
  disposeAll,
  HOST,
  KiB,
  MiB,
  messageQueue,
  once,
  openClient,
  randomBytes,
  randomText,
  startEchoServer,
  track,
  withTimeout,
} from './helpers.js'

after(disposeAll)

/** A TCP pass-through that counts bytes each way. */
async function startProxy(targetPort: number) {
  const counts = { up: 0, down: 0 }
  const server = track(
    net.createServer((inbound) => {
      track(inbound)
      const outbound = track(net.connect({ host: HOST, port: targetPort }))
      inbound.on('error', () => outbound.destroy())
      outbound.on('error', () => inbound.destroy())
      inbound.on('data', (chunk: Buffer) => {
        counts.up += chunk.length
        outbound.write(chunk)
      })
      outbound.on('data', (chunk: Buffer) => {
        counts.down += chunk.length
        inbound.write(chunk)
      })
      inbound.on('close', () => outbound.destroy())
      outbound.on('close', () => inbound.destroy())
    }),
  )
  server.listen(0, HOST)
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  return { url: `ws://${HOST}:${port}/`, counts }
}

const FULL_LADDER = [0, 1, 1023, 1024, 64 * KiB, MiB, 16 * MiB]
const SMALL_LADDER = [0, 1, 1023, 1024, 64 * KiB + 1]

interface Config {
  bits: number
  takeover: boolean
  ladder: number[]
}

const configs: Config[] = []
for (let bits = 8; bits <= 15; bits++) {
  for (const takeover of [false, true]) {
    const full = (bits === 15 && !takeover) || (bits === 8 && takeover)
    configs.push({ bits, takeover, ladder: full ? FULL_LADDER : SMALL_LADDER })
  }
}

async function roundTrips(config: Config): Promise<void> {
  const { bits, takeover, ladder } = config
  // Room for 16 MiB of random data, which deflate makes slightly larger (see the last test).
  const maxPayload = 16 * MiB + 64 * KiB
  const serverExtensions: string[] = []
  const { port } = await startEchoServer({
    maxPayload,
    perMessageDeflate: takeover
      ? { serverNoContextTakeover: false, clientNoContextTakeover: false, threshold: 0 }
      : { threshold: 0 },
    open(ws) {
      serverExtensions.push(ws.extensions)
    },
  })
  const proxy = await startProxy(port)
  const clientOptions: PerMessageDeflateOptions = {
    serverMaxWindowBits: bits,
    clientMaxWindowBits: bits,
    threshold: 0,
  }
  const ws = await openClient(proxy.url, { perMessageDeflate: clientOptions, maxPayload })
  const expected = takeover
    ? `permessage-deflate; server_max_window_bits=${bits}; client_max_window_bits=${bits}`
    : `permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=${bits}; client_max_window_bits=${bits}`
  assert.equal(ws.extensions, expected)
  assert.deepEqual(serverExtensions, [expected])
  const inbox = messageQueue(ws)

  for (const size of ladder) {
    const cases: [string, string | Buffer][] = [
      ['compressible text', compressibleText(size)],
      ['random text', randomText(size)],
      ['compressible binary', compressibleBytes(size)],
      ['random binary', randomBytes(size)],
    ]
    for (const [kind, payload] of cases) {
      ws.send(payload)
      const ms = size >= MiB ? 20_000 : 5000
      const echoed = await inbox.next(ms, `echo of ${kind} ${size} B (bits ${bits}, takeover ${takeover})`)
      const what = `${kind} of ${size} B, bits ${bits}, takeover ${takeover}`
      if (typeof payload === 'string') {
        assert.equal(echoed.binary, false, what)
        assert.equal(echoed.text?.length, payload.length, what)
        assert.ok(echoed.text === payload, `content differs: ${what}`)
      } else {
        assert.equal(echoed.binary, true, what)
        assert.equal(echoed.data.length, payload.length, what)
        assert.ok(echoed.data.equals(payload), `content differs: ${what}`)
      }
    }
  }

  // Compressible data travels compressed both ways (threshold 0: even small messages are).
  const before = { ...proxy.counts }
  const big = compressibleText(MiB)
  ws.send(big)
  const echoed = await inbox.next(10_000, 'echo of the 1 MiB probe')
  assert.ok(echoed.text === big, 'echoed.text === big')
  const up = proxy.counts.up - before.up
  const down = proxy.counts.down - before.down
  assert.ok(up < MiB / 4, `client → server sent ${up} bytes for 1 MiB of compressible text`)
  assert.ok(down < MiB / 4, `server → client sent ${down} bytes for 1 MiB of compressible text`)

  ws.close(1000)
  const closed = await once<CloseEvent>(ws, 'close', 5000)
  assert.equal(closed.code, 1000)
}

describe('round trips, Rally client ↔ Rally server', { timeout: 60_000 }, () => {
  for (const config of configs) {
    const name = `window ${config.bits} bits, ${config.takeover ? 'context takeover' : 'no context takeover'}, ${config.ladder === FULL_LADDER ? 'full' : 'small'} size ladder`
    test(name, { timeout: 45_000 }, () => roundTrips(config))
  }

  test('defaults on both sides: the browsers offer, server answers no context takeover', async () => {
    const { url } = await startEchoServer({ perMessageDeflate: true })
    const ws = await openClient(url)
    assert.equal(ws.extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover')
    const inbox = messageQueue(ws)
    for (const payload of [compressibleText(5000), compressibleBytes(200 * KiB), 'small']) {
      ws.send(payload)
      const echoed = await inbox.next()
      if (typeof payload === 'string') assert.equal(echoed.text, payload)
      else assert.ok(echoed.data.equals(payload), 'echoed.data.equals(payload)')
    }
  })

  test('client offers nothing with perMessageDeflate: false; server without deflate answers none', async () => {
    const on = await startEchoServer({ perMessageDeflate: true })
    const plainClient = await openClient(on.url, { perMessageDeflate: false })
    assert.equal(plainClient.extensions, '')
    const off = await startEchoServer({ perMessageDeflate: false })
    const offeringClient = await openClient(off.url)
    assert.equal(offeringClient.extensions, '')
    for (const ws of [plainClient, offeringClient]) {
      const inbox = messageQueue(ws)
      const payload = compressibleText(4000)
      ws.send(payload)
      assert.equal((await inbox.next()).text, payload)
    }
  })

  for (const size of [2000, 20 * KiB]) {
    test(`context takeover: the same incompressible ${size} B message three times, both ways`, async () => {
      // A sender that compresses a message into its window must send those compressed bytes: if
      // it sent the message plain instead (because deflate did not shrink it), its window and
      // the peer's would differ and the next message would refer to bytes the peer never saw.
      const { url } = await startEchoServer({
        perMessageDeflate: { serverNoContextTakeover: false, clientNoContextTakeover: false },
      })
      const ws = await openClient(url, { perMessageDeflate: {} })
      assert.equal(ws.extensions, 'permessage-deflate')
      const inbox = messageQueue(ws)
      const message = randomBytes(size)
      for (let i = 0; i < 3; i++) {
        ws.send(message)
        const echoed = await inbox.next(5000, `echo #${i}`)
        assert.ok(echoed.data.equals(message), `echo #${i}`)
      }
      const text = randomText(size)
      for (let i = 0; i < 3; i++) {
        ws.send(text)
        assert.ok((await inbox.next(5000, `text echo #${i}`)).text === text, `text echo #${i}`)
      }
    })
  }

  test('a 16 MiB incompressible message at a 16 MiB limit is delivered with compression on', async () => {
    // The limit is on the message; deflate makes random data slightly larger than itself, so the
    // compressed frame is a little over 16 MiB. The message itself is within the limit.
    const maxPayload = 16 * MiB
    const { url } = await startEchoServer({ maxPayload, perMessageDeflate: true })
    const ws = await openClient(url, { maxPayload })
    const inbox = messageQueue(ws)
    const closed = once<CloseEvent>(ws, 'close', 20_000).then((e) => e.code)
    const payload = randomBytes(16 * MiB)
    ws.send(payload)
    const echoed = await withTimeout(
      Promise.race([
        inbox.next(20_000),
        closed.then((code) => Promise.reject(new Error(`closed with ${code}`))),
      ]),
      20_000,
      'the echo of 16 MiB of random bytes',
    )
    assert.ok(echoed.data.equals(payload), 'echoed.data.equals(payload)')
  })
})
