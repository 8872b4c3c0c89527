/**
 * Extensions (RFC 6455 5.8, 9) at the level of the core: the compression hook that
 * permessage-deflate plugs into (RFC 7692 6), driven here by a fake codec so that only the core's
 * rules are under test — RSV1 where it may and may not appear, ordering while a message is
 * decompressed off the event loop.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { MessageCompression } from '../../src/protocol/extensions/compression.js'
import { Opcode, ProtocolErrorCode } from '../../src/protocol/index.js'
import { assertFails, bytes, closePayload, concat, connect, frameFrom, hex, peerOf, utf8 } from './helpers.js'

/** A "codec" that leaves bytes as they are: compressed payload = message. */
class FakeCompression implements MessageCompression {
  readonly threshold: number
  // Output depends on the message alone (no context kept), like deflate without takeover.
  readonly sharedKey = 'fake'
  readonly decompressCalls: { pieces: string[]; length: number; maxSize: number }[] = []
  /** Pending async results, resolved by the test in the order it chooses. */
  readonly pending: (() => void)[] = []
  closed = false

  constructor(
    private readonly mode: 'sync' | 'async',
    threshold = 0,
  ) {
    this.threshold = threshold
  }

  compress(data: Uint8Array): Uint8Array | Promise<Uint8Array> {
    const out = concat(bytes(0xcc), data) // a recognisable marker byte
    return this.mode === 'sync' ? out : Promise.resolve(out)
  }

  decompress(
    pieces: readonly Uint8Array[],
    length: number,
    maxSize: number,
  ): Uint8Array | Promise<Uint8Array> {
    this.decompressCalls.push({ pieces: pieces.map(hex), length, maxSize })
    const out = concat(...pieces)
    if (this.mode === 'sync') return out
    return new Promise((resolve) => this.pending.push(() => resolve(out)))
  }

  close(): void {
    this.closed = true
  }
}

const RSV1 = 0x40

for (const receiver of ['server', 'client'] as const) {
  const sender = peerOf(receiver)

  describe(`compression hook on a ${receiver}`, () => {
    it('without a negotiated extension, RSV1 fails the connection with 1002', () => {
      assertFails(
        receiver,
        frameFrom(sender, Opcode.Text, utf8('x'), { rsv: RSV1 }),
        ProtocolErrorCode.ReservedBits,
        1002,
      )
    })

    it('a compressed message (RSV1 on the first frame) goes through decompress, whole', () => {
      const { connection, recorder } = connect(receiver)
      const codec = new FakeCompression('sync')
      connection.setCompression(codec)
      connection.receive(
        concat(
          frameFrom(sender, Opcode.Text, utf8('he'), { rsv: RSV1, fin: false }),
          frameFrom(sender, Opcode.Continuation, utf8('llo')),
          frameFrom(sender, Opcode.Binary, bytes(1, 2)), // not compressed
        ),
      )
      assert.deepEqual(codec.decompressCalls, [
        { pieces: [hex(utf8('he')), hex(utf8('llo'))], length: 5, maxSize: connection.limits.maxMessageSize },
      ])
      assert.deepEqual(recorder.events, [
        { type: 'message', data: hex(utf8('hello')), isBinary: false },
        { type: 'message', data: '0102', isBinary: true },
      ])
    })

    it('decompressed text is checked for UTF-8 (1007)', () => {
      const { connection, recorder } = connect(receiver)
      connection.setCompression(new FakeCompression('sync'))
      connection.receive(frameFrom(sender, Opcode.Text, bytes(0x61, 0xff), { rsv: RSV1 }))
      assert.equal(recorder.errors[0]?.code, ProtocolErrorCode.InvalidUtf8)
      assert.equal(recorder.errors[0]?.closeCode, 1007)
    })

    it('RSV1 on a continuation frame fails with 1002 (RFC 7692 6.1)', () => {
      for (const firstRsv of [RSV1, 0]) {
        const { connection, recorder } = connect(receiver)
        connection.setCompression(new FakeCompression('sync'))
        connection.receive(
          concat(
            frameFrom(sender, Opcode.Binary, bytes(1), { rsv: firstRsv, fin: false }),
            frameFrom(sender, Opcode.Continuation, bytes(2), { rsv: RSV1 }),
          ),
        )
        assert.deepEqual(
          recorder.errors.map((e) => [e.code, e.closeCode]),
          [[ProtocolErrorCode.CompressedContinuation, 1002]],
        )
        assert.equal(recorder.events.filter((e) => e.type === 'message').length, 0)
      }
    })

    it('RSV1 on a control frame fails with 1002 (RFC 7692 6.1)', () => {
      for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
        const { connection, recorder } = connect(receiver)
        connection.setCompression(new FakeCompression('sync'))
        connection.receive(
          frameFrom(sender, opcode, opcode === Opcode.Close ? closePayload(1000) : utf8('p'), { rsv: RSV1 }),
        )
        assert.deepEqual(
          recorder.errors.map((e) => [e.code, e.closeCode]),
          [[ProtocolErrorCode.ReservedBits, 1002]],
          `opcode ${opcode}`,
        )
        assert.deepEqual(
          recorder.events.filter((e) => e.type !== 'protocolError' && e.type !== 'closeTransport'),
          [],
        )
      }
    })

    it('RSV2 and RSV3 stay reserved with compression negotiated', () => {
      for (const rsv of [0x20, 0x10, 0x60]) {
        const { connection, recorder } = connect(receiver)
        connection.setCompression(new FakeCompression('sync'))
        connection.receive(frameFrom(sender, Opcode.Text, utf8('x'), { rsv }))
        assert.equal(recorder.errors[0]?.code, ProtocolErrorCode.ReservedBits)
      }
    })

    it('while a message is decompressed off the event loop, later input in the same chunk waits', async () => {
      const { connection, recorder } = connect(receiver)
      const codec = new FakeCompression('async')
      connection.setCompression(codec)
      connection.receive(
        concat(
          frameFrom(sender, Opcode.Binary, bytes(1, 1), { rsv: RSV1 }),
          frameFrom(sender, Opcode.Text, utf8('after')),
          frameFrom(sender, Opcode.Ping, utf8('p')),
        ),
      )
      // Later chunks wait too, in order.
      connection.receive(
        concat(
          frameFrom(sender, Opcode.Binary, bytes(2, 2), { rsv: RSV1 }),
          frameFrom(sender, Opcode.Text, utf8('2')),
        ),
      )
      connection.receive(frameFrom(sender, Opcode.Close, closePayload(1000)))
      assert.deepEqual(recorder.events, [], 'nothing overtakes the message being decompressed')
      assert.equal(codec.pending.length, 1)
      codec.pending.shift()!()
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(recorder.events, [
        { type: 'message', data: '0101', isBinary: true },
        { type: 'message', data: hex(utf8('after')), isBinary: false },
        { type: 'ping', data: hex(utf8('p')) },
      ])
      assert.equal(codec.pending.length, 1, 'the second compressed message is being decompressed')
      codec.pending.shift()!()
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(recorder.events.slice(3), [
        { type: 'message', data: '0202', isBinary: true },
        { type: 'message', data: hex(utf8('2')), isBinary: false },
        { type: 'closeReceived', code: 1000, reason: '' },
        ...(receiver === 'server' ? [{ type: 'closeTransport' as const }] : []),
      ])
    })

    it('sends compressed messages with RSV1 on the first frame only, above the threshold', () => {
      const { connection, recorder } = connect(peerOf(receiver))
      connection.setCompression(new FakeCompression('sync', 4))
      connection.sendText('abcd', true) // forced
      connection.sendText('abc') // under the threshold
      connection.sendBinary(bytes(9, 9, 9, 9, 9), false) // compression refused for this message
      connection.sendBinary(bytes(7), true) // forced
      // Above the threshold, but the fake codec's output (marker + data) is not smaller: sent as is.
      connection.sendText('abcdef')
      assert.deepEqual(
        recorder.frames().map((f) => [f.opcode, f.rsv, hex(f.payload)]),
        [
          [Opcode.Text, RSV1, `cc${hex(utf8('abcd'))}`],
          [Opcode.Text, 0, hex(utf8('abc'))],
          [Opcode.Binary, 0, '0909090909'],
          [Opcode.Binary, RSV1, 'cc07'],
          [Opcode.Text, 0, hex(utf8('abcdef'))],
        ],
      )
    })
  })
}
