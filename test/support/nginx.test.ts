/**
 * The test nginx itself: it proxies to a real upstream on its free port, a reload changes what new
 * requests get, a configuration nginx rejects is an error that names it, and stop() leaves no
 * process listening.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { after, test } from 'node:test'
import { listenOnFreePort } from './net.js'
import { type NginxConfig, startNginx } from './nginx.js'

const upstream = createServer((request, response) => {
  response.setHeader('content-type', 'text/plain')
  response.end(`upstream saw ${request.url} via ${request.headers['x-via'] ?? 'nothing'}`)
})
const upstreamPort = await listenOnFreePort(upstream)
after(() => new Promise<void>((resolve) => upstream.close(() => resolve())))

const proxied =
  (via: string): NginxConfig =>
  ({ port }) =>
    `
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://127.0.0.1:${upstreamPort};
            proxy_set_header X-Via ${via};
        }
    }`

test('nginx proxies on its own port, reloads a new configuration, and stops', async () => {
  const nginx = await startNginx(proxied('first'))
  try {
    const first = await fetch(`http://127.0.0.1:${nginx.port}/a`)
    assert.equal(first.headers.get('server')?.startsWith('nginx'), true)
    assert.equal(await first.text(), 'upstream saw /a via first')

    await nginx.reload(proxied('second'))
    const second = await fetch(`http://127.0.0.1:${nginx.port}/b`)
    assert.equal(await second.text(), 'upstream saw /b via second')

    await assert.rejects(
      nginx.reload(() => 'server { this is not nginx; }'),
      /nginx rejects the configuration/,
    )
    // The rejected configuration was never loaded: the running one still serves.
    const third = await fetch(`http://127.0.0.1:${nginx.port}/c`)
    assert.equal(await third.text(), 'upstream saw /c via second')
  } finally {
    await nginx.stop()
  }
  await assert.rejects(fetch(`http://127.0.0.1:${nginx.port}/d`))
})
