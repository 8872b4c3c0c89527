/**
 * `rally echo --http2`: a WebSocket over an HTTP/2 stream and one over HTTP/1.1 on the same port,
 * SIGTERM closing the HTTP/2 one with 1001 and exiting 0; --http2 without a certificate refused.
 */
import assert from 'node:assert/strict'
import { connect as http2Connect } from 'node:http2'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from '../../src/index.js'
import { rallyCli } from '../interop/helpers.js'
import { type Certificate, makeCertificate, StreamClient } from './helpers.js'

let certificate: Certificate
before(() => {
  certificate = makeCertificate()
})
after(() => certificate?.dispose())

describe('rally echo --http2', () => {
  test('echoes over an HTTP/2 stream and over HTTP/1.1 on the same port; SIGTERM: 1001, exit 0', async () => {
    const child = rallyCli([
      'echo',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--http2',
      '--tls-cert',
      certificate.certFile,
      '--tls-key',
      certificate.keyFile,
    ])
    const session = { current: undefined as ReturnType<typeof http2Connect> | undefined }
    try {
      const port = await child.waitForLine(
        (line) => {
          const match = /^listening on wss:\/\/127\.0\.0\.1:(\d+)$/.exec(line)
          return match === null ? undefined : Number(match[1])
        },
        20_000,
        'the readiness line',
      )
      const h2 = http2Connect(`https://localhost:${port}`, { ca: certificate.cert })
      session.current = h2
      h2.on('error', () => {})
      await new Promise<void>((resolve) => h2.once('remoteSettings', () => resolve()))
      assert.equal(h2.remoteSettings.enableConnectProtocol, true)
      const { client } = await StreamClient.open(h2, port)
      client.send('over h2')
      assert.equal(await client.message(), 'over h2')

      const ws = new WebSocket(`wss://localhost:${port}/`, [], { tls: { ca: certificate.cert } })
      const reply = new Promise<string>((resolve) => {
        ws.onmessage = (event) => resolve(String(event.data))
      })
      await new Promise<void>((resolve) => {
        ws.onopen = () => resolve()
      })
      ws.send('over 1.1')
      assert.equal(await reply, 'over 1.1')

      child.process.kill('SIGTERM')
      const info = await client.closed()
      assert.equal(client.closeFrame?.code, 1001)
      assert.equal(info.code, 1001)
      const exit = await child.waitForExit(10_000)
      assert.deepEqual(exit, { code: 0, signal: null }, child.stderr)
    } finally {
      session.current?.destroy()
      await child.kill()
    }
  })

  test('--http2 without --tls-cert/--tls-key exits 2 saying so', async () => {
    const child = rallyCli(['echo', '--port', '0', '--http2'])
    const exit = await child.waitForExit(10_000)
    assert.deepEqual(exit, { code: 2, signal: null })
    assert.match(child.stderr, /--http2 needs --tls-cert and --tls-key/)
  })
})
