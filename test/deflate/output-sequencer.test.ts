/**
 * The output sequencer on its own (sans I/O): each clause of the invariant written at the top of
 * src/protocol/output-sequencer.ts — order, what waits where, what counts, when the transport
 * may close — checked with a compression whose results the test releases in any order.
 */
import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { describe, test } from 'node:test'
import { Connection } from '../../src/protocol/connection.js'
import {
  CompressionDeclinedError,
  type MessageCompression,
} from '../../src/protocol/extensions/compression.js'
import { Opcode } from '../../src/protocol/opcode.js'
import { OutputSequencer, type OutputSink } from '../../src/protocol/output-sequencer.js'
import { recordingHandler } from './helpers.js'

/** A compression whose every call waits until the test settles it ("compressed" = reversed). */
class ManualCompression implements MessageCompression {
  readonly threshold = 10
  readonly sharedKey = undefined
  readonly jobs: { data: Uint8Array; resolve(): void; reject(error: unknown): void }[] = []
  compress(data: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.jobs.push({ data, resolve: () => resolve(Buffer.from(data).reverse()), reject })
    })
  }
  decompress(): Uint8Array {
    throw new Error('not used')
  }
  close(): void {}
}

interface Written {
  opcode: number
  fin: boolean
  rsv1: boolean
  text: string
}

function harness() {
  const written: Written[] = []
  const events: string[] = []
  const failures: unknown[] = []
  const sink: OutputSink = {
    write(header, payload) {
      const bytes = Buffer.concat([header, payload ?? new Uint8Array(0)])
      const length = bytes[1]! & 0x7f
      const offset = length === 126 ? 4 : length === 127 ? 10 : 2
      written.push({
        opcode: bytes[0]! & 0x0f,
        fin: (bytes[0]! & 0x80) !== 0,
        rsv1: (bytes[0]! & 0x40) !== 0,
        text: bytes.subarray(offset).toString(),
      })
      events.push('write')
    },
    closeTransport() {
      events.push('closeTransport')
    },
    outputFlushed() {
      events.push('outputFlushed')
    },
  }
  const sequencer = new OutputSequencer(
    sink,
    { masking: false },
    { compressionFailed: (error) => failures.push(error) },
  )
  const compression = new ManualCompression()
  sequencer.compression = compression
  return { sequencer, compression, written, events, failures }
}

/** Lets settled promises run their callbacks. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const bytes = (text: string): Buffer => Buffer.from(text)

describe('OutputSequencer', () => {
  test('order: frames leave in call order whichever compression finishes first', async () => {
    const { sequencer, compression, written, events } = harness()
    sequencer.sendMessage(Opcode.Text, bytes('first message'), undefined)
    sequencer.sendMessage(Opcode.Text, bytes('short'), undefined)
    sequencer.sendControl(Opcode.Ping, bytes('p'))
    sequencer.sendMessage(Opcode.Binary, bytes('third message'), undefined)
    assert.equal(written.length, 0, 'everything waits behind the first compression')
    compression.jobs[1]!.resolve()
    await settle()
    assert.equal(written.length, 0, 'a later compression that finishes first still waits')
    compression.jobs[0]!.resolve()
    await settle()
    assert.deepEqual(
      written.map((frame) => [frame.opcode, frame.rsv1, frame.text]),
      [
        [Opcode.Text, true, 'egassem tsrif'],
        [Opcode.Text, false, 'short'],
        [Opcode.Ping, false, 'p'],
        [Opcode.Binary, true, 'egassem driht'],
      ],
    )
    assert.equal(events.at(-1), 'outputFlushed')
    assert.equal(sequencer.messagesAccepted, 3)
    assert.equal(sequencer.messagesReleased, 3)
  })

  test('what counts: queued messages count their uncompressed size until written', async () => {
    const { sequencer, compression } = harness()
    sequencer.sendMessage(Opcode.Text, bytes('x'.repeat(100)), undefined)
    sequencer.sendMessage(Opcode.Text, bytes('tiny'), undefined)
    assert.equal(sequencer.pendingBytes, 104)
    assert.equal(sequencer.messagesReleased, 0)
    compression.jobs[0]!.resolve()
    await settle()
    assert.equal(sequencer.pendingBytes, 0)
    assert.equal(sequencer.messagesReleased, 2)
  })

  test('what waits where: messages sent during a fragmented message follow its last fragment', () => {
    const { sequencer, written } = harness()
    sequencer.sendFragment(Opcode.Text, bytes('one '), false)
    sequencer.sendMessage(Opcode.Binary, bytes('held'), false)
    assert.equal(sequencer.pendingBytes, 4, 'a held message counts')
    sequencer.sendControl(Opcode.Pong, bytes('c'))
    sequencer.sendFragment(Opcode.Continuation, bytes('two'), true)
    assert.deepEqual(
      written.map((frame) => [frame.opcode, frame.fin, frame.text]),
      [
        [Opcode.Text, false, 'one '],
        [Opcode.Pong, true, 'c'],
        [Opcode.Continuation, true, 'two'],
        [Opcode.Binary, true, 'held'],
      ],
    )
    assert.equal(sequencer.pendingBytes, 0)
  })

  test('the close frame drops held messages: no data after it (RFC 6455 5.5.1)', () => {
    const { sequencer, written } = harness()
    sequencer.sendFragment(Opcode.Text, bytes('open'), false)
    sequencer.sendMessage(Opcode.Text, bytes('never'), false)
    sequencer.sendClose(Buffer.from([0x03, 0xe8]))
    assert.equal(sequencer.pendingBytes, 0)
    assert.deepEqual(
      written.map((frame) => frame.opcode),
      [Opcode.Text, Opcode.Close],
    )
  })

  test('when the transport may close: only after the queue, close frame last, has been written', async () => {
    const { sequencer, compression, written, events } = harness()
    sequencer.sendMessage(Opcode.Binary, bytes('compress me please'), undefined)
    sequencer.sendClose(Buffer.from([0x03, 0xe8]))
    sequencer.closeTransportWhenFlushed()
    assert.deepEqual(events, [], 'nothing written, transport still open')
    compression.jobs[0]!.resolve()
    await settle()
    assert.deepEqual(
      written.map((frame) => frame.opcode),
      [Opcode.Binary, Opcode.Close],
    )
    assert.deepEqual(events, ['write', 'write', 'closeTransport'])
  })

  test('with nothing queued the transport closes at once', () => {
    const { sequencer, events } = harness()
    sequencer.sendClose(Buffer.from([0x03, 0xe8]))
    sequencer.closeTransportWhenFlushed()
    assert.deepEqual(events, ['write', 'closeTransport'])
  })

  test('failing: discard() drops what waits; late compressions write nothing and report nothing', async () => {
    const { sequencer, compression, written, failures } = harness()
    sequencer.sendMessage(Opcode.Text, bytes('will be dropped'), undefined)
    sequencer.sendMessage(Opcode.Text, bytes('this one too!!'), undefined)
    sequencer.discard()
    assert.equal(sequencer.pendingBytes, 0)
    sequencer.sendClose(Buffer.from([0x03, 0xf3]))
    assert.deepEqual(
      written.map((frame) => frame.opcode),
      [Opcode.Close],
      'the close frame goes at once',
    )
    compression.jobs[0]!.resolve()
    compression.jobs[1]!.reject(new Error('zlib broke'))
    await settle()
    assert.equal(written.length, 1)
    assert.deepEqual(failures, [])
  })

  test('a compression error is reported; a declined compression is sent uncompressed', async () => {
    const { sequencer, compression, written, failures } = harness()
    sequencer.sendMessage(Opcode.Text, bytes('declined by the codec'), undefined)
    compression.jobs[0]!.reject(new CompressionDeclinedError('busy'))
    await settle()
    assert.deepEqual(
      written.map((frame) => [frame.rsv1, frame.text]),
      [[false, 'declined by the codec']],
    )
    sequencer.sendMessage(Opcode.Text, bytes('this one fails'), undefined)
    const failure = new Error('zlib broke')
    compression.jobs[1]!.reject(failure)
    await settle()
    assert.deepEqual(failures, [failure])
  })

  test('after stop() nothing is written', async () => {
    const { sequencer, compression, written, events } = harness()
    sequencer.sendMessage(Opcode.Text, bytes('too late for this'), undefined)
    sequencer.stop()
    compression.jobs[0]!.resolve()
    sequencer.closeTransportWhenFlushed()
    await settle()
    assert.equal(written.length, 0)
    assert.deepEqual(events, [])
  })
})

test('a connection whose compression fails closes with 1011 and reports the error (the sequencer tells the connection itself)', async () => {
  const { handler, frames, internalErrors } = recordingHandler()
  const connection = new Connection('server', handler)
  const compression = new ManualCompression()
  connection.setCompression(compression)
  connection.sendText('a message long enough to compress', true)
  const zlibError = new Error('zlib broke')
  compression.jobs[0]!.reject(zlibError)
  await settle()
  assert.deepEqual(internalErrors, [zlibError])
  const close = frames.find((frame) => (frame.first & 0x0f) === Opcode.Close)
  assert.ok(close !== undefined, 'a close frame was sent')
  assert.equal(close.payload.readUInt16BE(0), 1011)
})
