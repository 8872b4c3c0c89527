/**
 * CommonJS and ES-module users of the built package, with real `require` and `import` in real
 * Node processes: `const WebSocket = require('rallyjs/ws')` is the class, with Server,
 * WebSocketServer and createWebSocketStream on it, as ws's is; `require('rallyjs')` works (Node
 * loads the ES module build through require(), unflagged since 20.19 — the `engines` floor); and
 * a default import carries the same statics. Each script runs an echo over 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { type BuiltPackage, buildPackage, makeApp, runNode } from './helpers.js'

let built: BuiltPackage

before(() => {
  built = buildPackage()
})

after(() => built?.remove())

/** The ws README's first example in CommonJS, as a complete program that exits on its own. */
const wsCommonJs = `
const assert = require('node:assert/strict')
const WebSocket = require('rallyjs/ws')
assert.equal(typeof WebSocket, 'function')
assert.equal(WebSocket.Server, WebSocket.WebSocketServer)
assert.equal(WebSocket.WebSocket, WebSocket)
assert.equal(typeof WebSocket.createWebSocketStream, 'function')
assert.equal(WebSocket.OPEN, 1)
const wss = new WebSocket.Server({ port: 0, host: '127.0.0.1' }, () => {
  const ws = new WebSocket('ws://127.0.0.1:' + wss.address().port)
  ws.on('open', () => ws.send('hello'))
  ws.on('message', (data, isBinary) => {
    console.log('echo ' + data.toString() + ' ' + isBinary)
    ws.close(1000)
  })
  ws.on('close', (code) => {
    console.log('closed ' + code)
    wss.close(() => console.log('server closed'))
  })
})
wss.on('connection', (socket) => {
  assert.ok(socket instanceof WebSocket)
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }))
})
`

/** The root export from CommonJS: the native server and the WHATWG client. */
const rootCommonJs = `
const { createServer, WebSocket } = require('rallyjs')
const server = createServer({
  port: 0,
  host: '127.0.0.1',
  message(ws, data, isBinary) { ws.send(data, { binary: isBinary }) },
})
server.ready().then(() => {
  const ws = new WebSocket('ws://127.0.0.1:' + server.port)
  ws.onopen = () => ws.send('root')
  ws.onmessage = (event) => {
    console.log('echo ' + event.data)
    ws.close()
  }
  ws.onclose = () => server.close().then(() => console.log('server closed'))
})
`

/** A default import in an ES module: the same class, carrying the same statics. */
const wsModule = `
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import WebSocket, { WebSocketServer, createWebSocketStream } from 'rallyjs/ws'
assert.equal(WebSocket.Server, WebSocketServer)
assert.equal(WebSocket.createWebSocketStream, createWebSocketStream)
assert.equal(createRequire(import.meta.url)('rallyjs/ws'), WebSocket, 'require and import give one class')
const wss = new WebSocket.Server({ port: 0, host: '127.0.0.1' })
await new Promise((resolve) => wss.on('listening', resolve))
wss.on('connection', (socket) => socket.on('message', (data) => socket.send(data)))
const ws = new WebSocket('ws://127.0.0.1:' + wss.address().port)
const duplex = WebSocket.createWebSocketStream(ws)
duplex.write('streamed')
const [chunk] = await Promise.all([new Promise((resolve) => duplex.once('data', resolve))])
console.log('echo ' + chunk.toString())
ws.close()
await new Promise((resolve) => ws.on('close', resolve))
await new Promise((resolve) => wss.close(resolve))
console.log('server closed')
`

describe('the package from CommonJS and ES modules', () => {
  it("require('rallyjs/ws') is the WebSocket class: new WebSocket(url), new WebSocket.Server({ port })", () => {
    const app = makeApp(built.dir, 'cjs-ws', { rallyjs: built.pkg }, { 'main.cjs': wsCommonJs })
    const { status, stdout, stderr } = runNode(app, join(app, 'main.cjs'))
    assert.equal(status, 0, stderr)
    assert.deepEqual(stdout.trim().split('\n'), ['echo hello false', 'closed 1000', 'server closed'])
  })

  it("require('rallyjs') gives the root API: createServer and the WHATWG WebSocket", () => {
    const app = makeApp(built.dir, 'cjs-root', { rallyjs: built.pkg }, { 'main.cjs': rootCommonJs })
    const { status, stdout, stderr } = runNode(app, join(app, 'main.cjs'))
    assert.equal(status, 0, stderr)
    assert.deepEqual(stdout.trim().split('\n'), ['echo root', 'server closed'])
  })

  it("import WebSocket from 'rallyjs/ws' carries Server and createWebSocketStream, the same class as require's", () => {
    const app = makeApp(built.dir, 'esm-ws', { rallyjs: built.pkg }, { 'main.mjs': wsModule })
    const { status, stdout, stderr } = runNode(app, join(app, 'main.mjs'))
    assert.equal(status, 0, stderr)
    assert.deepEqual(stdout.trim().split('\n'), ['echo streamed', 'server closed'])
  })
})
