/**
 * Message order with permessage-deflate: small messages take the synchronous path (or go
 * uncompressed), messages over SYNC_LIMIT go through the thread pool; none may overtake
 * another, in either direction, and a close right behind a large message must not drop it.
 */
import assert from 'node:assert/strict'
import type { Buffer } from 'node:buffer'
import { after, describe, test } from 'node:test'
import type { CloseEvent, ServerWebSocket } from '../../src/index.js'
import { SYNC_LIMIT } from '../../src/node/deflate.js'
import {
  disposeAll,
  KiB,
  messageQueue,
  once,
  openClient,
  Queue,
  randomBytes,
  startServer,
} from './helpers.js'

after(disposeAll)

/** Sizes of a burst: plain (below threshold), sync-compressed, async-compressed (random, so the compressed size stays over SYNC_LIMIT). */
const PATTERN = [100, 2000, 100 * KiB, 10, 3000, SYNC_LIMIT + 1, 50, 200 * KiB, 1500, 1]

function makeMessage(seq: number, size: number, binary: boolean): string | Buffer {
  const body = randomBytes(Math.max(size, 8))
  body.writeUInt32BE(seq, 0)
  if (!binary) {
    const prefix = `${String(seq).padStart(6, '0')}|`
    return prefix + body.toString('base64').slice(0, Math.max(0, size - prefix.length))
  }
  return body.subarray(0, Math.max(size, 8))
}

function seqOf(data: Buffer | string, binary: boolean): number {
  if (!binary) return Number((typeof data === 'string' ? data : data.toString()).slice(0, 6))
  return (data as Buffer).readUInt32BE(0)
}

const configs = [
  { name: 'no context takeover (sync + async paths)', server: { perMessageDeflate: true }, client: {} },
  {
    name: 'context takeover (stream path for every compressed message)',
    server: { perMessageDeflate: { serverNoContextTakeover: false, clientNoContextTakeover: false } },
    client: {},
  },
]

const COUNT = 60

describe('order of mixed small and large compressed messages', { timeout: 60_000 }, () => {
  for (const config of configs) {
    test(`client → server → client burst, ${config.name}`, { timeout: 30_000 }, async () => {
      const serverSeen: number[] = []
      const { url } = await startServer({
        ...config.server,
        decodeText: false,
        message(ws, data, isBinary) {
          serverSeen.push(seqOf(data as Buffer, isBinary))
          ws.send(data, { binary: isBinary })
        },
      })
      const ws = await openClient(url, { perMessageDeflate: config.client })
      const inbox = messageQueue(ws)
      const sent: (string | Buffer)[] = []
      for (let seq = 0; seq < COUNT; seq++) {
        const message = makeMessage(seq, PATTERN[seq % PATTERN.length]!, seq % 3 === 0)
        sent.push(message)
        ws.send(message)
        if (seq % 7 === 0) ws.ping(`p${seq}`)
      }
      const clientSeen: number[] = []
      for (let i = 0; i < COUNT; i++) {
        const echoed = await inbox.next(10_000, `echo #${i}`)
        const seq = seqOf(echoed.binary ? echoed.data : (echoed.text as string), echoed.binary)
        clientSeen.push(seq)
        const original = sent[seq]
        assert.ok(original !== undefined, `message #${i} has no valid sequence number: corrupted`)
        assert.ok(
          typeof original === 'string' ? echoed.text === original : echoed.data.equals(original),
          `content of #${seq}`,
        )
      }
      const expected = Array.from({ length: COUNT }, (_, i) => i)
      assert.deepEqual(serverSeen, expected, 'server received in send order')
      assert.deepEqual(clientSeen, expected, 'client received the echoes in send order')
    })

    test(`server → client burst, ${config.name}`, { timeout: 30_000 }, async () => {
      const sent: (string | Buffer)[] = []
      const { url } = await startServer({
        ...config.server,
        message(ws) {
          for (let seq = 0; seq < COUNT; seq++) {
            const message = makeMessage(seq, PATTERN[(seq * 3) % PATTERN.length]!, seq % 2 === 0)
            sent.push(message)
            ws.send(message)
            if (seq % 5 === 0) ws.ping('p')
          }
        },
      })
      const ws = await openClient(url, { perMessageDeflate: config.client })
      const inbox = messageQueue(ws)
      ws.send('go')
      const seen: number[] = []
      for (let i = 0; i < COUNT; i++) {
        const message = await inbox.next(10_000, `message #${i}`)
        const seq = seqOf(message.binary ? message.data : (message.text as string), message.binary)
        seen.push(seq)
        const original = sent[seq]
        assert.ok(original !== undefined, `message #${i} has no valid sequence number: corrupted`)
        assert.ok(
          typeof original === 'string' ? message.text === original : message.data.equals(original),
          `content of #${seq}`,
        )
      }
      assert.deepEqual(
        seen,
        Array.from({ length: COUNT }, (_, i) => i),
      )
    })

    test(`a close right behind a large compressed message does not drop it, ${config.name}`, async () => {
      const events = new Queue<string>()
      const { url } = await startServer({
        ...config.server,
        message(_ws, data) {
          events.push(`message ${(data as Buffer).length}`)
        },
        close(_ws, code) {
          events.push(`close ${code}`)
        },
      })
      const ws = await openClient(url, { perMessageDeflate: config.client })
      const big = randomBytes(300 * KiB)
      ws.send(big)
      ws.send(randomBytes(2000))
      ws.close(1000)
      assert.equal(await events.next(5000), `message ${300 * KiB}`)
      assert.equal(await events.next(5000), 'message 2000')
      assert.equal(await events.next(5000), 'close 1000')
    })

    test(`server: send(large) then close() → the client gets the message, then the close, ${config.name}`, async () => {
      const big = randomBytes(300 * KiB)
      const { url } = await startServer({
        ...config.server,
        message(ws: ServerWebSocket<undefined>) {
          ws.send(big)
          ws.send('after')
          ws.close(4000, 'done')
        },
      })
      const ws = await openClient(url, { perMessageDeflate: config.client })
      const inbox = messageQueue(ws)
      const closed = once<CloseEvent>(ws, 'close', 5000)
      ws.send('go')
      assert.ok((await inbox.next()).data.equals(big), '(await inbox.next()).data.equals(big)')
      assert.equal((await inbox.next()).text, 'after')
      const event = await closed
      assert.equal(event.code, 4000)
      assert.equal(event.reason, 'done')
    })
  }
})
