/**
 * Extended CONNECTs that node:http2's own client would refuse or repair, sent frame by frame: the
 * well-formed one is answered `:status 200` (HPACK static index 8, byte 0x88); a request missing
 * `:authority`, `:path`, `:scheme` or `:protocol`, a GET with `:protocol`, one carrying the
 * connection-specific `upgrade` field, a `:path` not starting with "/", a bad or repeated
 * `:authority`, or an upper-case field name is malformed (RFC 9113 8.1.1, 8.2.1, 8.2.2, 8.3, 8.5;
 * RFC 8441 4) and is reset by nghttp2 with PROTOCOL_ERROR — a stream error, not a GOAWAY — before
 * Rally sees it, and a flood of fields is reset with ENHANCE_YOUR_CALM. (Rally's own 400s for
 * these fields are a second line behind it.)
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
const ENHANCE_YOUR_CALM = 0xb
const STATUS_200_INDEXED = 0x88

describe('malformed extended CONNECT, byte level', () => {
  test('well-formed: 200; each malformed variant: RST_STREAM on its stream only', async () => {
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
          // RFC 9113 8.3.1: :path of a request other than OPTIONS starts with "/".
          ['a relative :path', [...without(':path'), [':path', 'chat']]],
          ['an asterisk :path', [...without(':path'), [':path', '*']]],
          ['an absolute-form :path', [...without(':path'), [':path', 'https://localhost/chat']]],
          // RFC 9113 8.3.1 and RFC 3986 3.2.2: no space in an authority; not empty.
          ['a space in :authority', [...without(':authority'), [':authority', 'local host']]],
          ['an empty :authority', [...without(':authority'), [':authority', '']]],
          // RFC 9113 8.3: each pseudo-header field once; 8.2.1: names in lower case.
          ['a repeated :authority', [...full, [':authority', 'elsewhere']]],
          ['an upper-case field name', [...full, ['Sec-WebSocket-Protocol', 'chat']]],
        ]
        for (const [what, fields] of malformed) {
          assert.deepEqual(
            await rawRequest(h.port, certificate.cert, fields),
            { rstCode: PROTOCOL_ERROR },
            what,
          )
        }
        // More fields than Node's maxHeaderListPairs (128): ENHANCE_YOUR_CALM, before Rally's
        // maxHeaderCount (431 from 101 fields; see hostile.test.ts) could run.
        const flood = Array.from({ length: 200 }, (_, i): [string, string] => [`x-field-${i}`, 'v'])
        assert.deepEqual(await rawRequest(h.port, certificate.cert, [...full, ...flood]), {
          rstCode: ENHANCE_YOUR_CALM,
        })
        assert.equal(upgrades, 1, 'only the well-formed request reached the upgrade hook')
      },
    )
  })
})
