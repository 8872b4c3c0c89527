/**
 * Extended CONNECTs that node:http2's own client would refuse or repair, sent frame by frame: the
 * well-formed one is answered `:status 200` (HPACK static index 8, byte 0x88); a request missing
 * `:authority`, `:path`, `:scheme` or `:protocol`, a GET with `:protocol`, or one carrying the
 * connection-specific `upgrade` field is malformed (RFC 9113 8.1.1, 8.2.2, 8.5; RFC 8441 4) and is
 * reset by nghttp2 with PROTOCOL_ERROR — a stream error, not a GOAWAY — before Rally sees it.
 * (Rally's own 400s for these fields are a second line behind it.)
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type Certificate, makeCertificate, withH2Server } from './helpers.js'
import { rawRequest } from './raw-frames.js'

let certificate: Certificate
before(() => {
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

const PROTOCOL_ERROR = 0x1
const STATUS_200_INDEXED = 0x88

describe('malformed extended CONNECT, byte level', () => {
  test('well-formed: 200; each malformed variant: RST_STREAM PROTOCOL_ERROR on its stream only', async () => {
    let upgrades = 0
    await withH2Server(
      certificate,
      {
        upgrade: () => {
          upgrades++
          return undefined
        },
      },
      async (h) => {
        const full: [string, string][] = [
          [':method', 'CONNECT'],
          [':protocol', 'websocket'],
          [':scheme', 'https'],
          [':path', '/'],
          [':authority', `localhost:${h.port}`],
          ['sec-websocket-version', '13'],
        ]
        const without = (name: string) => full.filter(([field]) => field !== name)
        assert.deepEqual(await rawRequest(h.port, certificate.cert, full), {
          headerBlockFirstByte: STATUS_200_INDEXED,
        })
        const malformed: [string, [string, string][]][] = [
          ['no :authority', without(':authority')],
          ['no :path', without(':path')],
          ['no :scheme', without(':scheme')],
          ['no :protocol (a plain CONNECT may not carry :scheme and :path)', without(':protocol')],
          ['GET with :protocol', [[':method', 'GET'], ...without(':method')]],
          ['an upgrade field', [...full, ['upgrade', 'websocket']]],
        ]
        for (const [what, fields] of malformed) {
          assert.deepEqual(
            await rawRequest(h.port, certificate.cert, fields),
            { rstCode: PROTOCOL_ERROR },
            what,
          )
        }
        assert.equal(upgrades, 1, 'only the well-formed request reached the upgrade hook')
      },
    )
  })
})
