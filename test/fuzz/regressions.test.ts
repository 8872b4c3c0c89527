/**
 * Inputs the fuzz targets' invariants caught, each with the behaviour it now gets. (Their bytes are
 * also in the targets' seed corpus, replayed by corpus.test.ts.)
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createServer, type RallyServer } from '../../src/index.js'
import { HandshakeError, validateRequest } from '../../src/protocol/index.js'
import { rawHttp, upgradeRequest } from '../hardening/helpers.js'
import { loadTarget } from './engine.js'

const FIELDS = {
  host: ['example.com'],
  upgrade: ['websocket'],
  connection: ['Upgrade'],
  'sec-websocket-version': ['13'],
  'sec-websocket-key': ['dGhlIHNhbXBsZSBub25jZQ=='],
}

describe('http-head: a request line must carry HTTP/1.x as one digit, a dot, one digit', () => {
  // RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT. Read as numbers, "1.10" and
  // "1.1e3" passed for HTTP/1.1 or later on Rally's own port (Node's parser refuses them).
  const malformed = ['1.10', '1.1e3', '01.1', '1.1.1', '1.', '1', '1.1 ', '1.0x1', '+1.1']

  it('validateRequest answers 400 to malformed versions and still accepts 1.1', () => {
    for (const httpVersion of malformed) {
      assert.throws(
        () => validateRequest({ method: 'GET', httpVersion, fields: FIELDS }),
        (error: unknown) => error instanceof HandshakeError && error.status === 400,
        `HTTP/${httpVersion}`,
      )
    }
    assert.equal(
      validateRequest({ method: 'GET', httpVersion: '1.1', fields: FIELDS }).key,
      FIELDS['sec-websocket-key'][0],
    )
  })

  it('the fuzz target accepts the input that found it', async () => {
    const target = await loadTarget('http-head')
    const request =
      'GET /chat HTTP/1.1e3\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'
    await target.run(new TextEncoder().encode(request))
  })

  describe("on Rally's own port", () => {
    let server: RallyServer
    before(async () => {
      server = createServer({ port: 0, host: '127.0.0.1', message() {} })
      await server.ready()
    })
    after(() => server.close())

    for (const version of ['HTTP/1.10', 'HTTP/1.1e3']) {
      it(`${version} gets 400 and the connection closes`, async () => {
        const reply = await rawHttp(server.port!, upgradeRequest({ httpVersion: version }))
        assert.equal(reply.status, 400, reply.raw)
        assert.equal(reply.serverClosed, true)
      })
    }

    it('HTTP/1.1 still upgrades', async () => {
      const reply = await rawHttp(server.port!, upgradeRequest(), {
        until: (raw) => raw.includes('\r\n\r\n'),
      })
      assert.equal(reply.status, 101, reply.raw)
    })
  })
})
