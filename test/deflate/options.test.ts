/**
 * perMessageDeflate options: valid settings work end to end; invalid ones are refused when the
 * server or client is created (a RangeError from createServer / new WebSocket), not later as a
 * 500 on every handshake or a 1011 on every compressed message.
 */
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { createServer, WebSocket } from '../../src/index.js'
import type { PerMessageDeflateOptions } from '../../src/protocol/extensions/permessage-deflate.js'
import { compressibleText, disposeAll, HOST, messageQueue, openClient, startEchoServer } from './helpers.js'

after(disposeAll)

const INVALID: [string, PerMessageDeflateOptions][] = [
  ['serverMaxWindowBits: 16', { serverMaxWindowBits: 16 }],
  ['serverMaxWindowBits: 7', { serverMaxWindowBits: 7 }],
  ['clientMaxWindowBits: 7', { clientMaxWindowBits: 7 }],
  ['clientMaxWindowBits: 9.5', { clientMaxWindowBits: 9.5 }],
  ['level: 12', { level: 12 }],
  ['level: -2', { level: -2 }],
  ['memLevel: 0', { memLevel: 0 }],
  ['memLevel: 10', { memLevel: 10 }],
]

describe('invalid perMessageDeflate options', () => {
  for (const [name, options] of INVALID) {
    test(`createServer throws RangeError: ${name}`, async () => {
      let server: ReturnType<typeof createServer> | undefined
      try {
        assert.throws(() => {
          server = createServer({ port: 0, host: HOST, heartbeat: false, perMessageDeflate: options })
        }, RangeError)
      } finally {
        // (Waits for listening first: close() before that leaves the port open — reported.)
        await server?.ready().catch(() => {})
        await server?.close()
      }
    })

    test(`new WebSocket throws RangeError: ${name}`, () => {
      // Port 9 (discard) on 127.0.0.1: nothing is awaited; a constructor that does not throw
      // is terminated at once.
      let ws: WebSocket | undefined
      try {
        assert.throws(() => {
          ws = new WebSocket(`ws://${HOST}:9/`, [], { perMessageDeflate: options })
        }, RangeError)
      } finally {
        ws?.addEventListener('error', () => {})
        ws?.terminate()
      }
    })
  }
})

describe('valid perMessageDeflate options', () => {
  const VALID: PerMessageDeflateOptions[] = [
    { level: 0 },
    { level: 9, memLevel: 9 },
    { memLevel: 1, serverMaxWindowBits: 8, clientMaxWindowBits: 8 },
    { threshold: 0, serverNoContextTakeover: false, clientNoContextTakeover: false },
  ]
  for (const options of VALID) {
    test(`echo with ${JSON.stringify(options)} on both sides`, async () => {
      const { url } = await startEchoServer({ perMessageDeflate: options })
      const ws = await openClient(url, { perMessageDeflate: options })
      assert.match(ws.extensions, /^permessage-deflate/)
      const inbox = messageQueue(ws)
      for (const text of [compressibleText(5000), 'short', compressibleText(200_000)]) {
        ws.send(text)
        assert.ok((await inbox.next()).text === text, `echo of ${text.length} B`)
      }
    })
  }
})
