/**
 * The test nginx itself: it proxies to a real upstream on its free port, a reload changes what new
 * requests get, a configuration nginx rejects is an error that names it, and stop() leaves no
 * process listening.
 */
import assert from 'node:assert/strict'
import { createServer, request } from 'node:http'
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

/**
 * One GET on a connection of its own: a reload changes what NEW connections get, and a keep-alive
 * connection from before it (fetch's pool) may still be served by an old worker, as in production.
 */
function get(port: number, path: string): Promise<{ server: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        text += chunk
      })
      response.on('end', () => resolve({ server: String(response.headers.server ?? ''), text }))
      response.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

test('nginx proxies on its own port, reloads a new configuration, and stops', async () => {
  const nginx = await startNginx(proxied('first'))
  try {
    const first = await get(nginx.port, '/a')
    assert.equal(first.server.startsWith('nginx'), true)
    assert.equal(first.text, 'upstream saw /a via first')

    await nginx.reload(proxied('second'))
    assert.equal((await get(nginx.port, '/b')).text, 'upstream saw /b via second')

    await assert.rejects(
      nginx.reload(() => 'server { this is not nginx; }'),
      /nginx rejects the configuration/,
    )
    // The rejected configuration was never loaded: the running one still serves.
    assert.equal((await get(nginx.port, '/c')).text, 'upstream saw /c via second')
  } finally {
    await nginx.stop()
  }
  await assert.rejects(get(nginx.port, '/d'))
})
