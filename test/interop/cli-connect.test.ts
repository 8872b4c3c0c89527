/**
 * `rally connect` (the CLI, as a child process) against Python `websockets`' echo server
 * (peers/server.py), and its usage errors (README, "CLI": bad flags exit 2 with a one-line reason).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  type Child,
  type PythonServer,
  rallyCli,
  requirePythonWebsockets,
  startPythonServer,
} from './helpers.js'

function lineIs(expected: string): (line: string) => true | undefined {
  return (line) => (line === expected ? true : undefined)
}

describe('rally connect with a python websockets echo server', () => {
  let server: PythonServer
  const children: Child[] = []

  function connect(args: string[]): Child {
    const child = rallyCli(['connect', ...args])
    children.push(child)
    return child
  }

  before(async () => {
    requirePythonWebsockets()
    server = await startPythonServer()
  })

  after(async () => {
    for (const child of children) await child.kill()
    await server?.stop()
  })

  it("sends stdin lines, prints '< hello', closes with /close 1000 done and exits 0", async () => {
    const cli = connect([server.url('/?t=hello')])
    await cli.waitForLine(lineIs('connected'), 15_000, '"connected"')
    cli.write('hello\n')
    await cli.waitForLine(lineIs('< hello'), 5000, '"< hello"')
    // Only after the echo: python stops sending once it has the close frame (RFC 6455 5.5.1),
    // so a /close written together with the line would race the echo.
    cli.write('/close 1000 done\n')
    const exit = await cli.waitForExit(10_000)
    assert.deepEqual(exit, { code: 0, signal: null }, `stderr: ${cli.stderr}`)
    assert.ok(cli.lines.includes('< hello'), cli.stdout)
    // Python echoes the close frame, code and reason.
    assert.equal(cli.lines.at(-1), 'closed 1000 done', cli.stdout)
    assert.equal(cli.stderr, '')
    const seen = await server.closedReport('/?t=hello')
    assert.deepEqual([seen.code, seen.reason], [1000, 'done'])
  })

  it('queues lines typed before the connection opens, in order, multi-byte text included', async () => {
    const cli = connect([server.url('/?t=early')])
    // Written at once, before the handshake completes.
    cli.write('one\nzwei 😀\n三\n')
    await cli.waitForLine(lineIs('< 三'), 15_000, '"< 三"')
    assert.deepEqual(
      cli.lines.filter((line) => line.startsWith('< ')),
      ['< one', '< zwei 😀', '< 三'],
    )
    cli.write('/close 4000 fin\n')
    const exit = await cli.waitForExit(10_000)
    assert.deepEqual(exit, { code: 0, signal: null }, `stderr: ${cli.stderr}`)
    assert.equal(cli.lines.at(-1), 'closed 4000 fin')
  })

  it('/ping works, and end of input closes with 1000 and exits 0', async () => {
    const cli = connect([server.url('/?t=eof')])
    await cli.waitForLine(lineIs('connected'), 15_000, '"connected"')
    cli.write('/ping hi there\n')
    cli.write('still here\n')
    await cli.waitForLine(lineIs('< still here'), 5000, '"< still here"')
    cli.process.stdin!.end()
    const exit = await cli.waitForExit(10_000)
    assert.deepEqual(exit, { code: 0, signal: null }, `stderr: ${cli.stderr}`)
    assert.equal(cli.lines.at(-1), 'closed 1000')
    assert.equal((await server.closedReport('/?t=eof')).code, 1000)
  })

  it('a refused handshake (403) prints the error and exits 1', async () => {
    const cli = connect([server.url('/forbidden')])
    const exit = await cli.waitForExit(10_000)
    assert.equal(exit.code, 1)
    assert.match(cli.stderr, /^error: .*403/m)
    assert.equal(cli.lines.at(-1), 'closed 1006')
  })
})

describe('rally connect usage errors', () => {
  async function usage(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
    const cli = rallyCli(['connect', ...args])
    try {
      const exit = await cli.waitForExit(15_000)
      return { code: exit.code, stderr: cli.stderr, stdout: cli.stdout }
    } finally {
      await cli.kill()
    }
  }

  function assertOneLine(stderr: string): void {
    const lines = stderr.split('\n').filter((line) => line !== '')
    assert.equal(lines.length, 1, `stderr should be one line: ${JSON.stringify(stderr)}`)
    assert.match(lines[0]!, /^rally: \S/)
  }

  it('a bad flag exits 2 with a one-line message on stderr', async () => {
    const result = await usage(['ws://127.0.0.1:9/', '--bogus'])
    assert.equal(result.code, 2)
    assertOneLine(result.stderr)
    assert.match(result.stderr, /--bogus/)
    assert.equal(result.stdout, '')
  })

  it('a flag missing its value exits 2 with one line', async () => {
    const result = await usage(['ws://127.0.0.1:9/', '--protocol'])
    assert.equal(result.code, 2)
    assertOneLine(result.stderr)
  })

  it('no URL, or a URL that is not ws:, exits 2 with one line', async () => {
    for (const args of [[], ['notaurl'], ['ftp://127.0.0.1/']]) {
      const result = await usage(args)
      assert.equal(result.code, 2, `args ${JSON.stringify(args)}: ${result.stderr}`)
      assertOneLine(result.stderr)
    }
  })

  it('--help exits 0 and prints usage', async () => {
    const result = await usage(['--help'])
    assert.equal(result.code, 0)
    assert.match(result.stdout, /^Usage: rally connect URL/)
  })
})
