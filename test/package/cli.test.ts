/**
 * The `rally` command as built (dist/cli/main.js, what the package's bin runs; `npm run build`
 * first): --version and -v, a negative --port refused with what is wrong with it, `rally connect`'s
 * /ping printing the pong and its round trip, and the demo's favicon.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { type Demo, startDemo } from '../../src/demo/server.js'
import { Child } from '../interop/helpers.js'
import { ROOT } from './pack.js'

const VERSION = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version

function rally(args: string[]): Child {
  return new Child(`rally ${args.join(' ')}`, process.execPath, ['dist/cli/main.js', ...args])
}

describe('rally --version', () => {
  for (const flag of ['--version', '-v']) {
    it(`${flag} prints the package's version and exits 0`, async () => {
      const cli = rally([flag])
      const exit = await cli.waitForExit(10_000)
      assert.deepEqual(exit, { code: 0, signal: null }, cli.stderr)
      assert.deepEqual(cli.lines, [VERSION])
    })
  }
})

describe('bad --port values say what is wrong with them', () => {
  const cases = [
    ['echo', '-1'],
    ['relay', '-1'],
    ['echo', '65536'],
    ['demo', '3.5'],
  ] as const
  for (const [command, value] of cases) {
    it(`rally ${command} --port ${value} exits 2 naming the value and the range`, async () => {
      const cli = rally([command, '--port', value])
      const exit = await cli.waitForExit(10_000)
      assert.deepEqual(exit, { code: 2, signal: null }, cli.stderr)
      assert.equal(
        cli.stderr,
        `rally: --port must be a whole number from 0 to 65535 (0 picks a free port), got "${value}"\n`,
      )
    })
  }

  it('a negative --max-payload is refused by its own check, not as an unknown flag', async () => {
    const cli = rally(['echo', '--max-payload', '-5'])
    const exit = await cli.waitForExit(10_000)
    assert.deepEqual(exit, { code: 2, signal: null })
    assert.equal(cli.stderr, 'rally: --max-payload must be a positive number of bytes, got "-5"\n')
  })
})

describe('rally connect /ping', () => {
  let echo: Child
  let url: string
  const children: Child[] = []

  before(async () => {
    echo = rally(['echo', '--port', '0', '--host', '127.0.0.1'])
    url = await echo.waitForLine(
      (line) => /^listening on (ws:\/\/\S+)$/.exec(line)?.[1],
      20_000,
      'the readiness line',
    )
  })

  after(async () => {
    for (const child of children) await child.kill()
    await echo?.kill()
  })

  it('prints each pong with its payload and round trip, in order', async () => {
    const cli = rally(['connect', url])
    children.push(cli)
    await cli.waitForLine((line) => (line === 'connected' ? true : undefined), 10_000, '"connected"')
    cli.write('/ping hi there\n/ping\n')
    const pongs: string[] = []
    await cli.waitForLine(
      (line) => {
        if (line.startsWith('< pong')) pongs.push(line)
        return pongs.length === 2 ? true : undefined
      },
      10_000,
      'two pongs',
    )
    assert.match(pongs[0]!, /^< pong hi there in \d+\.\d ms$/)
    assert.match(pongs[1]!, /^< pong in \d+\.\d ms$/)
    cli.write('/close\n')
    assert.deepEqual(await cli.waitForExit(10_000), { code: 0, signal: null }, cli.stderr)
  })

  it('refuses a ping payload over 125 bytes without sending it (RFC 6455 5.5)', async () => {
    const cli = rally(['connect', url])
    children.push(cli)
    await cli.waitForLine((line) => (line === 'connected' ? true : undefined), 10_000, '"connected"')
    cli.write(`/ping ${'x'.repeat(126)}\nafter\n`)
    // The echo of the next line proves the connection is still open and the ping line handled.
    await cli.waitForLine((line) => (line === '< after' ? true : undefined), 10_000, '"< after"')
    assert.match(cli.stderr, /at most 125 bytes/)
    assert.ok(!cli.lines.some((line) => line.startsWith('< pong')), cli.stdout)
    cli.write('/close\n')
    assert.deepEqual(await cli.waitForExit(10_000), { code: 0, signal: null })
  })
})

describe('the demo serves /favicon.ico', () => {
  let demo: Demo

  before(async () => {
    demo = await startDemo({ port: 0, host: '127.0.0.1' })
  })

  after(async () => {
    await demo?.close()
  })

  it('as an icon (200, image/x-icon, the ICO magic number)', async () => {
    const response = await fetch(`http://127.0.0.1:${demo.port}/favicon.ico`)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), 'image/x-icon')
    const body = new Uint8Array(await response.arrayBuffer())
    // ICONDIR: reserved 0, type 1 (icon), at least one image.
    assert.deepEqual([...body.subarray(0, 4)], [0, 0, 1, 0])
    assert.ok(body[4]! >= 1)
  })
})
