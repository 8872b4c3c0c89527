/**
 * The demo's pages and assets come from demo/public through @hono/node-server's serveStatic: each
 * with its content type, and nothing outside that directory, however the path is spelled.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { type Demo, startDemo } from '../../src/demo/server.js'
import { withTimeout } from '../support/timing.js'

/** The status line the demo answers to `GET target`, sent as written (fetch would normalise `..`). */
async function statusLineFor(port: number, target: string): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
  let answer = ''
  socket.setEncoding('latin1')
  await withTimeout(
    (async () => {
      for await (const chunk of socket) answer += chunk
    })(),
    5000,
    `the answer to GET ${target}`,
  )
  return answer.slice(0, answer.indexOf('\r\n'))
}

describe('the demo serves demo/public', () => {
  let demo: Demo

  before(async () => {
    demo = await startDemo({ port: 0, host: '127.0.0.1', statsInterval: 60_000 })
  })

  after(async () => {
    await demo?.close()
  })

  for (const [file, type] of [
    ['index.html', 'text/html; charset=utf-8'],
    ['chat.js', 'text/javascript; charset=utf-8'],
    ['style.css', 'text/css; charset=utf-8'],
    ['favicon.ico', 'image/x-icon'],
  ] as const) {
    it(`/${file} as ${type}, byte for byte`, async () => {
      const response = await fetch(`http://127.0.0.1:${demo.port}/${file}`)
      assert.equal(response.status, 200)
      assert.equal(response.headers.get('content-type'), type)
      const expected = readFileSync(new URL(`../../demo/public/${file}`, import.meta.url))
      assert.deepEqual(Buffer.from(await response.arrayBuffer()), expected)
    })
  }

  it('404 for a file that is not there', async () => {
    const response = await fetch(`http://127.0.0.1:${demo.port}/missing.html`)
    assert.equal(response.status, 404)
    assert.equal(await response.text(), 'Not found')
  })

  for (const target of [
    '/../package.json',
    '/%2e%2e/package.json',
    '/..%2fpackage.json',
    '/../../etc/passwd',
  ]) {
    it(`nothing outside demo/public: GET ${target}`, async () => {
      assert.match(await statusLineFor(demo.port, target), /^HTTP\/1\.1 4\d\d /)
    })
  }
})
