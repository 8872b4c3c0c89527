/**
 * `rally echo` (the CLI, as a child process) against a client nobody here wrote: Python's
 * `websockets` (Debian's python3-websockets). The Python side (peers/client.py) sends, checks
 * the echoes and prints one JSON report per line; the assertions are here.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  caseReport,
  type RallyEcho,
  type Report,
  requirePythonWebsockets,
  runPythonClient,
  startRallyEcho,
} from './helpers.js'

const MiB = 1024 * 1024
const SIZES = [0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB]

function assertEchoed(report: Report, type: 'text' | 'binary', size: number): void {
  const label = JSON.stringify(report)
  assert.equal(report.type, type, label)
  assert.equal(report.size, size, label)
  assert.equal(report.echoType, type, `echoed with the wrong type: ${label}`)
  assert.equal(report.echoSize, size, `echoed with the wrong size: ${label}`)
  assert.equal(report.equal, true, `echoed content differs: ${label}`)
}

describe('rally echo with a python websockets client', () => {
  let echo: RallyEcho

  before(async () => {
    requirePythonWebsockets()
    echo = await startRallyEcho()
  })

  after(async () => {
    await echo?.child.kill()
  })

  it('--port 0 prints the port it really listens on', () => {
    assert.match(echo.line, /^listening on ws:\/\/127\.0\.0\.1:\d+$/)
    assert.ok(echo.port > 0 && echo.port < 65536, `printed port ${echo.port}`)
  })

  describe('the round-trip suite', () => {
    let reports: Report[]

    before(async () => {
      const run = await runPythonClient('suite', `${echo.url}/any/path?x=1`)
      reports = run.reports
      const error = reports.find((report) => report.event === 'error')
      assert.equal(error, undefined, `python client failed: ${JSON.stringify(error)}\n${run.stderr}`)
      assert.equal(run.exit.code, 0, `python client exited ${run.exit.code}: ${run.stderr}`)
    })

    it('connects without extensions or subprotocol (compression=None)', () => {
      const open = reports.find((report) => report.event === 'open')
      assert.deepEqual(open, { event: 'open', extensions: [], subprotocol: null })
    })

    for (const size of SIZES) {
      it(`echoes text and binary of ${size} bytes`, () => {
        assertEchoed(caseReport(reports, `text-${size}`), 'text', size)
        assertEchoed(caseReport(reports, `binary-${size}`), 'binary', size)
      })
    }

    it('echoes multi-byte UTF-8 (emoji, CJK, astral plane) exactly', () => {
      const report = caseReport(reports, 'utf8')
      assertEchoed(report, 'text', Buffer.byteLength('emoji 😀🎉👍🏽 CJK 漢字かなカナ한국어 mixed é ß ∑ 𝄞'))
      assert.equal(report.echo, 'emoji 😀🎉👍🏽 CJK 漢字かなカナ한국어 mixed é ß ∑ 𝄞')
    })

    it('reassembles fragmented messages (iterables, async iterables, 5000 fragments)', () => {
      const text = caseReport(reports, 'fragmented-text')
      assertEchoed(text, 'text', Buffer.byteLength('fragmented 😀 end'))
      assert.equal(text.echo, 'fragmented 😀 end')
      assertEchoed(caseReport(reports, 'fragmented-binary'), 'binary', 1002)
      const async = caseReport(reports, 'fragmented-async')
      assertEchoed(async, 'text', Buffer.byteLength('async 漢字'))
      assert.equal(async.echo, 'async 漢字')
      assertEchoed(caseReport(reports, 'fragmented-5000'), 'binary', 5000)
    })

    it('answers pings (empty, 5 bytes, 125 bytes) with pongs', () => {
      const pings = reports.filter((report) => report.case === 'ping')
      assert.deepEqual(
        pings.map((report) => [report.size, report.pong]),
        [
          [0, true],
          [5, true],
          [125, true],
        ],
      )
    })

    it('answers a ping sent between the fragments of a message, and still echoes the message', () => {
      const report = caseReport(reports, 'fragmented-with-ping')
      assertEchoed(report, 'text', 23)
      assert.equal(report.echo, 'before ping, after ping')
      assert.equal(caseReport(reports, 'ping-mid-message').pong, true)
    })

    it('answers a close with 4001 "bye" by echoing the code and the reason', () => {
      const closed = reports.find((report) => report.event === 'closed')
      assert.ok(closed, JSON.stringify(reports))
      assert.equal(closed.code, 4001)
      // RFC 6455 5.5.1 says the status code is "typically" echoed; Rally echoes the reason too, as
      // python-websockets and ws do.
      assert.equal(closed.reason, 'bye')
      assert.equal(reports.at(-1)?.event, 'done')
    })
  })

  it('declines permessage-deflate offered by python by default, and echoes uncompressed', async () => {
    const { exit, reports, stderr } = await runPythonClient('deflate', `${echo.url}/`)
    assert.equal(exit.code, 0, `${JSON.stringify(reports)}\n${stderr}`)
    const open = reports.find((report) => report.event === 'open')!
    assert.equal((open.requestExtensions as string[])[0]?.startsWith('permessage-deflate'), true)
    assert.deepEqual(open.extensions, [])
    assert.deepEqual(open.responseExtensions, [], 'no Sec-WebSocket-Extensions in the 101 response')
    assertEchoed(caseReport(reports, 'compressible-text'), 'text', 60000)
    assertEchoed(caseReport(reports, 'compressible-binary'), 'binary', 100000)
    assert.equal(reports.find((report) => report.event === 'closed')?.code, 1000)
  })

  it("picks the first offered subprotocol: ['chat', 'superchat'] gives 'chat'", async () => {
    const { exit, reports, stderr } = await runPythonClient('subprotocol', `${echo.url}/`)
    assert.equal(exit.code, 0, `${JSON.stringify(reports)}\n${stderr}`)
    const open = reports.find((report) => report.event === 'open')
    assert.deepEqual(open, { event: 'open', subprotocol: 'chat', responseProtocols: ['chat'] })
    assertEchoed(caseReport(reports, 'text'), 'text', 2)
  })

  it('answers close frames: empty, 123-byte reason, and invalid ones with 1002/1007', async () => {
    const { exit, reports, stderr } = await runPythonClient('close-frames', `${echo.url}/`)
    assert.equal(exit.code, 0, `${JSON.stringify(reports)}\n${stderr}`)
    const codes = Object.fromEntries(
      reports.filter((report) => report.event === 'closed').map((report) => [report.variant, report.code]),
    )
    assert.deepEqual(codes, {
      // An empty close frame is answered with an empty one: python reports 1005 (no status).
      empty: 1005,
      'long-reason': 4123,
      // 1005 must not appear on the wire (RFC 6455 7.4.1); a 1-byte payload is malformed (5.5.1).
      'wire-1005': 1002,
      'one-byte': 1002,
      // A close reason must be UTF-8 (5.5.1); 1007 as for text (8.1).
      'bad-utf8-reason': 1007,
    })
    assert.equal(reports.filter((report) => report.unexpectedMessage !== undefined).length, 0)
  })

  it('echoes a 64 MiB message (its documented limit), and closes 64 MiB + 1 with 1009', async () => {
    const { exit, reports, stderr } = await runPythonClient('limit', `${echo.url}/`)
    assert.equal(exit.code, 0, `${JSON.stringify(reports)}\n${stderr}`)
    assertEchoed(caseReport(reports, 'binary-64MiB'), 'binary', 64 * MiB)
    assert.equal(
      reports.find((report) => report.case === 'too-big'),
      undefined,
      'nothing echoed',
    )
    assert.equal(reports.find((report) => report.event === 'closed')?.code, 1009, JSON.stringify(reports))
  })

  it('accepts a code point split across fragments, and closes invalid UTF-8 with 1007', async () => {
    const { exit, reports, stderr } = await runPythonClient('frames', `${echo.url}/`)
    assert.equal(exit.code, 0, `${JSON.stringify(reports)}\n${stderr}`)
    assert.deepEqual(caseReport(reports, 'split-code-point'), {
      case: 'split-code-point',
      echoType: 'text',
      echo: 'x😀y',
    })
    assert.equal(
      reports.find((report) => report.case === 'invalid-utf8'),
      undefined,
      'nothing echoed for invalid UTF-8',
    )
    const closed = reports.find((report) => report.event === 'closed')
    assert.equal(closed?.code, 1007, JSON.stringify(reports))
  })
})
