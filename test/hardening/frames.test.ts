/**
 * Hostile frames after the handshake: each gets the exact close code in the server's close frame
 * (read off the wire), the server closes TCP, and two well-behaved clients on the same server
 * keep exchanging messages without losing one.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { after, afterEach, before, beforeEach, describe, test } from 'node:test'
import { createServer, ProtocolError, ProtocolErrorCode, type RallyServer } from '../../src/index.js'
import {
  clientFrame,
  closePayload,
  echoHandlers,
  installGuards,
  newLog,
  Opcode,
  RawPeer,
  type ServerLog,
  Witnesses,
  waitFor,
} from './helpers.js'

installGuards()

const MAX_PAYLOAD = 1024 * 1024

let server: RallyServer
let log: ServerLog
let witnesses: Witnesses
let port: number
const peers = new Set<RawPeer>()
let protocolErrorsBefore = 0

before(async () => {
  log = newLog()
  server = createServer({ port: 0, host: '127.0.0.1', maxPayload: MAX_PAYLOAD, ...echoHandlers(log) })
  await server.ready()
  port = server.port!
  witnesses = await Witnesses.start(`ws://127.0.0.1:${port}/`)
})

after(async () => {
  try {
    await witnesses?.stop()
  } finally {
    await server?.close()
  }
})

beforeEach(() => {
  protocolErrorsBefore = server.stats().protocolErrors
  log.errors.length = 0
})

afterEach(async () => {
  for (const peer of peers) peer.destroy()
  await Promise.all([...peers].map((p) => p.waitForClose()))
  peers.clear()
  await witnesses.checkpoint()
  await waitFor(
    () => server.clients.size === 2,
    2000,
    'only the witnesses remain connected',
    () => server.clients.size,
  )
})

async function peer(): Promise<RawPeer> {
  const p = await RawPeer.connect(port)
  peers.add(p)
  return p
}

/** The error handler heard of the violation, with the expected error code. */
function expectReported(code: string): void {
  assert.equal(server.stats().protocolErrors, protocolErrorsBefore + 1, 'stats.protocolErrors')
  const error = log.errors.find((e) => e instanceof ProtocolError)
  assert.ok(error instanceof ProtocolError, `error handler got ${String(log.errors[0])}`)
  assert.equal(error.code, code)
}

/** Sends `bytes` on a fresh connection and expects exactly a close frame with `code`. */
async function hostile(bytes: Buffer | Buffer[], code: number, errorCode?: string): Promise<void> {
  const p = await peer()
  for (const chunk of Array.isArray(bytes) ? bytes : [bytes]) p.write(chunk)
  await p.expectFailure(code)
  if (errorCode !== undefined) expectReported(errorCode)
  // The peer goes away; the application's close handler hears 1006 (no close frame came).
  const closes = log.closes.length
  p.destroy()
  await p.waitForClose()
  await waitFor(() => log.closes.length > closes, 2000, 'the close handler')
  assert.equal(log.closes.at(-1)?.code, 1006)
}

describe('masking and reserved bits', { timeout: 60_000 }, () => {
  test('unmasked text frame → 1002', async () => {
    await hostile(clientFrame(Opcode.Text, 'hi', { mask: false }), 1002, ProtocolErrorCode.MaskRequired)
  })

  test('unmasked empty ping → 1002', async () => {
    await hostile(clientFrame(Opcode.Ping, '', { mask: false }), 1002, ProtocolErrorCode.MaskRequired)
  })

  test('unmasked frame after a valid one → 1002, the valid one echoed first', async () => {
    const p = await peer()
    p.write(Buffer.concat([clientFrame(Opcode.Text, 'ok'), clientFrame(Opcode.Text, 'bad', { mask: false })]))
    const close = await p.expectCloseFrame()
    assert.equal(close.code, 1002)
    assert.deepEqual(
      close.before.map((f) => [f.opcode, f.payload.toString()]),
      [[Opcode.Text, 'ok']],
    )
    await p.expectTcpClosed()
  })

  for (const [name, rsv] of [
    ['RSV1', 0x40],
    ['RSV2', 0x20],
    ['RSV3', 0x10],
    ['all three', 0x70],
  ] as const) {
    test(`${name} set without an extension → 1002`, async () => {
      await hostile(clientFrame(Opcode.Text, 'x', { rsv }), 1002, ProtocolErrorCode.ReservedBits)
    })
  }

  test('RSV1 on a ping → 1002', async () => {
    await hostile(clientFrame(Opcode.Ping, '', { rsv: 0x40 }), 1002, ProtocolErrorCode.ReservedBits)
  })
})

describe('bad opcodes', { timeout: 60_000 }, () => {
  for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    test(`opcode 0x${opcode.toString(16)} → 1002`, async () => {
      await hostile(clientFrame(opcode, 'payload'), 1002, ProtocolErrorCode.UnknownOpcode)
    })
  }

  test('a reserved opcode announced with a huge length and no payload → 1002 at once', async () => {
    // The first two bytes decide: the server must not wait for the rest of the header.
    await hostile(Buffer.from([0x83, 0xff]), 1002, ProtocolErrorCode.UnknownOpcode)
  })
})

describe('control frames', { timeout: 60_000 }, () => {
  test('ping with a 126-byte payload → 1002', async () => {
    await hostile(
      clientFrame(Opcode.Ping, Buffer.alloc(126, 0x61)),
      1002,
      ProtocolErrorCode.ControlFrameTooLong,
    )
  })

  test('close with a 126-byte payload → 1002', async () => {
    await hostile(
      clientFrame(Opcode.Close, closePayload(1000, 'r'.repeat(124))),
      1002,
      ProtocolErrorCode.ControlFrameTooLong,
    )
  })

  test('pong announcing 64 KiB with no payload → 1002 at once', async () => {
    // 16-bit length 65535, mask key, no payload: the close must not wait for the payload.
    await hostile(
      Buffer.from([0x8a, 0xfe, 0xff, 0xff, 1, 2, 3, 4]),
      1002,
      ProtocolErrorCode.ControlFrameTooLong,
    )
  })

  test('ping with FIN clear (fragmented) → 1002', async () => {
    await hostile(
      clientFrame(Opcode.Ping, 'a', { fin: false }),
      1002,
      ProtocolErrorCode.ControlFrameFragmented,
    )
  })

  test('close with FIN clear (fragmented) → 1002', async () => {
    await hostile(
      clientFrame(Opcode.Close, closePayload(1000), { fin: false }),
      1002,
      ProtocolErrorCode.ControlFrameFragmented,
    )
  })

  test('control: a 125-byte ping in the middle of a fragmented message is fine', async () => {
    const p = await peer()
    const ping = Buffer.alloc(125, 0x70)
    p.write(
      Buffer.concat([
        clientFrame(Opcode.Text, 'hel', { fin: false }),
        clientFrame(Opcode.Ping, ping),
        clientFrame(Opcode.Continuation, 'lo'),
      ]),
    )
    await p.until(() => p.frames.length >= 2, 2000, 'pong and echo')
    assert.deepEqual(
      p.frames.map((f) => [f.opcode, f.payload.toString()]),
      [
        [Opcode.Pong, ping.toString()],
        [Opcode.Text, 'hello'],
      ],
    )
  })
})

describe('lengths beyond the limits', { timeout: 60_000 }, () => {
  const header64 = (high: number, low: number, opcode = 0x82): Buffer => {
    const b = Buffer.alloc(14)
    b[0] = opcode
    b[1] = 0x80 | 127
    b.writeUInt32BE(high, 2)
    b.writeUInt32BE(low, 6)
    b.set([9, 8, 7, 6], 10)
    return b
  }

  test('64-bit length of 2^40 with no payload → 1009 immediately', async () => {
    const p = await peer()
    p.write(header64(0x100, 0))
    const close = await p.expectFailure(1009, 500)
    assert.ok(close.elapsed < 500, `close after ${close.elapsed} ms`)
    expectReported(ProtocolErrorCode.FrameTooLarge)
  })

  test('64-bit length of 2^53 - 1 with no payload → 1009 immediately', async () => {
    await hostile(header64(0x1fffff, 0xffffffff), 1009, ProtocolErrorCode.FrameTooLarge)
  })

  test('64-bit length just past the largest JS integer → 1009', async () => {
    await hostile(header64(0x200000, 0), 1009, ProtocolErrorCode.FrameTooLarge)
  })

  test('64-bit length with the most significant bit set → 1002', async () => {
    await hostile(header64(0x80000000, 0), 1002, ProtocolErrorCode.LengthOutOfRange)
  })

  test('maxPayload + 1 declared in a 64-bit length, no payload → 1009', async () => {
    await hostile(header64(0, MAX_PAYLOAD + 1), 1009, ProtocolErrorCode.FrameTooLarge)
  })

  test('a header split byte by byte still fails at once on the length', async () => {
    const p = await peer()
    const header = header64(0x100, 0)
    for (const byte of header) {
      p.write(Buffer.from([byte]))
      await new Promise((r) => setTimeout(r, 2))
    }
    await p.expectFailure(1009)
  })

  test('fragments adding up past maxPayload → 1009 before the last one is buffered', async () => {
    const half = Buffer.alloc(MAX_PAYLOAD / 2 + 1, 0x61)
    const p = await peer()
    p.write(clientFrame(Opcode.Binary, half, { fin: false }))
    // The second fragment's header alone must trigger the close.
    p.write(clientFrame(Opcode.Continuation, half).subarray(0, 14))
    await p.expectFailure(1009)
    expectReported(ProtocolErrorCode.MessageTooLarge)
  })

  test('exactly maxPayload is accepted (the limit is not off by one)', async () => {
    const p = await peer()
    p.write(clientFrame(Opcode.Binary, Buffer.alloc(MAX_PAYLOAD, 0x62)))
    await p.until(() => p.frames.length > 0, 3000, 'the echo')
    assert.equal(p.frames[0]!.opcode, Opcode.Binary)
    assert.equal(p.frames[0]!.payload.length, MAX_PAYLOAD)
  })
})

describe('fragmentation', { timeout: 60_000 }, () => {
  test('continuation without a start → 1002', async () => {
    await hostile(clientFrame(Opcode.Continuation, 'orphan'), 1002, ProtocolErrorCode.UnexpectedContinuation)
  })

  test('final continuation after a complete message → 1002', async () => {
    const p = await peer()
    p.write(Buffer.concat([clientFrame(Opcode.Text, 'done'), clientFrame(Opcode.Continuation, 'more')]))
    const close = await p.expectCloseFrame()
    assert.equal(close.code, 1002)
    assert.deepEqual(
      close.before.map((f) => f.payload.toString()),
      ['done'],
    )
  })

  test('a new text frame inside a fragmented message → 1002', async () => {
    await hostile(
      [clientFrame(Opcode.Text, 'a', { fin: false }), clientFrame(Opcode.Text, 'b')],
      1002,
      ProtocolErrorCode.ExpectedContinuation,
    )
  })
})

describe('invalid UTF-8', { timeout: 60_000 }, () => {
  const invalid: [string, number[]][] = [
    ['a lone 0xFF', [0xff]],
    ['a lone continuation byte', [0x80]],
    ['an overlong NUL', [0xc0, 0x80]],
    ['an overlong slash', [0xe0, 0x80, 0xaf]],
    ['a UTF-16 surrogate', [0xed, 0xa0, 0x80]],
    ['a code point past U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['a truncated sequence at the end', [0x61, 0xe2, 0x82]],
  ]
  for (const [name, bytes] of invalid) {
    test(`text with ${name} → 1007`, async () => {
      await hostile(clientFrame(Opcode.Text, Buffer.from(bytes)), 1007, ProtocolErrorCode.InvalidUtf8)
    })
  }

  test('invalid UTF-8 at the start of a large text frame → 1007 before the rest arrives', async () => {
    const p = await peer()
    const frame = clientFrame(
      Opcode.Text,
      Buffer.concat([Buffer.from([0xff]), Buffer.alloc(512 * 1024, 0x61)]),
    )
    p.write(frame.subarray(0, 100))
    await p.expectFailure(1007, 1000)
  })

  test('invalid UTF-8 split across fragments → 1007', async () => {
    await hostile(
      [
        clientFrame(Opcode.Text, Buffer.from([0x61, 0xf0, 0x9f]), { fin: false }),
        clientFrame(Opcode.Continuation, Buffer.from([0x41])),
      ],
      1007,
      ProtocolErrorCode.InvalidUtf8,
    )
  })

  test('valid UTF-8 split inside a code point across fragments is fine', async () => {
    const p = await peer()
    const text = Buffer.from('a😀b')
    p.write(
      Buffer.concat([
        clientFrame(Opcode.Text, text.subarray(0, 3), { fin: false }),
        clientFrame(Opcode.Continuation, text.subarray(3)),
      ]),
    )
    await p.until(() => p.frames.length > 0, 2000, 'the echo')
    assert.equal(p.frames[0]!.payload.toString(), 'a😀b')
  })

  test('invalid UTF-8 in a close reason → 1007', async () => {
    await hostile(
      clientFrame(Opcode.Close, closePayload(1000, Buffer.from([0x6f, 0x6b, 0xff]))),
      1007,
      ProtocolErrorCode.InvalidCloseReason,
    )
  })

  test('a surrogate in a close reason → 1007', async () => {
    await hostile(
      clientFrame(Opcode.Close, closePayload(1001, Buffer.from([0xed, 0xb0, 0x80]))),
      1007,
      ProtocolErrorCode.InvalidCloseReason,
    )
  })
})

describe('close frames', { timeout: 60_000 }, () => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]) {
    test(`close code ${code} → 1002`, async () => {
      await hostile(clientFrame(Opcode.Close, closePayload(code)), 1002, ProtocolErrorCode.InvalidCloseCode)
    })
  }

  test('a 1-byte close payload → 1002', async () => {
    await hostile(clientFrame(Opcode.Close, Buffer.from([0x03])), 1002, ProtocolErrorCode.InvalidClosePayload)
  })

  for (const code of [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999]) {
    test(`close code ${code} is valid: echoed, clean close`, async () => {
      const p = await peer()
      const closes = log.closes.length
      p.send(Opcode.Close, closePayload(code, 'bye'))
      const close = await p.expectCloseFrame()
      assert.equal(close.code, code)
      await p.expectTcpClosed()
      p.socket.end()
      await p.waitForClose()
      await waitFor(() => log.closes.length > closes, 2000, 'the close handler')
      assert.deepEqual(log.closes.at(-1), { code, reason: 'bye', url: '/' })
    })
  }

  test('garbage after the close frame is ignored', async () => {
    const p = await peer()
    p.write(Buffer.concat([clientFrame(Opcode.Close, closePayload(1000)), Buffer.from('not a frame at all')]))
    const close = await p.expectCloseFrame()
    assert.equal(close.code, 1000)
    await p.expectTcpClosed()
    assert.equal(server.stats().protocolErrors, protocolErrorsBefore, 'no protocol error counted')
  })
})
