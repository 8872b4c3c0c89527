/**
 * `rally relay` as a real process: the URL path is the topic, a message from one connection
 * reaches every other connection on the same path (not itself, not other paths), and SIGTERM
 * closes every connection with 1001 and exits 0.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { CloseEvent } from '../../src/index.js'
import { nextDomEvent, openPeers, type Peer, until, within } from './helpers.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Starts `rally relay` and resolves with its URL once it prints its readiness line. */
function startRelay(args: string[]): { child: ChildProcess; ready: Promise<string>; output: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'relay', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout!.setEncoding('utf8')
    child.stderr!.setEncoding('utf8')
    child.stdout!.on('data', (chunk: string) => {
      output += chunk
      const match = /listening on (ws:\/\/\S+)/.exec(output)
      if (match) resolve(match[1]!)
    })
    child.stderr!.on('data', (chunk: string) => {
      output += chunk
    })
    child.once('exit', (code) =>
      reject(new Error(`relay exited with ${code} before it was ready: ${output}`)),
    )
    child.once('error', reject)
  })
  return { child, ready, output: () => output }
}

describe('rally relay', () => {
  let relay: ReturnType<typeof startRelay>
  let url: string
  let a: Peer[] = []
  let b: Peer[] = []

  before(async () => {
    relay = startRelay(['--port', '0', '--host', '127.0.0.1'])
    url = await within(relay.ready, 20_000, 'the readiness line')
  })

  after(() => {
    for (const peer of [...a, ...b]) peer.ws.terminate()
    if (relay.child.exitCode === null && relay.child.signalCode === null) relay.child.kill('SIGKILL')
  })

  it('prints its address: ws://127.0.0.1:PORT', () => {
    assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+$/)
    assert.notEqual(url, 'ws://127.0.0.1:0')
  })

  it('relays a message to the other connections on the same path only', async () => {
    a = await openPeers(() => `${url}/a`, 3)
    b = await openPeers(() => `${url}/b`, 1)
    // The relay subscribes in `open`, before its 101 leaves: once a client is open, it is subscribed.
    a[0]!.ws.send('hello from a0')
    await until(
      () => a[1]!.messages.length === 1 && a[2]!.messages.length === 1,
      5000,
      'a1 and a2 to hear a0',
    )
    assert.deepEqual(a[1]!.messages, ['hello from a0'])
    assert.deepEqual(a[2]!.messages, ['hello from a0'])

    // a0 did not get its own message: the next thing it hears is a1's.
    a[1]!.ws.send('hello from a1')
    await until(() => a[0]!.messages.length === 1, 5000, 'a0 to hear a1')
    assert.deepEqual(a[0]!.messages, ['hello from a1'])
    await until(() => a[2]!.messages.length === 2, 5000, 'a2 to hear a1')
    assert.deepEqual(a[2]!.messages, ['hello from a0', 'hello from a1'])
    assert.deepEqual(a[1]!.messages, ['hello from a0'])

    // /b heard nothing from /a: the first thing it hears is from another /b connection.
    const [b2] = await openPeers(() => `${url}/b`, 1)
    b.push(b2!)
    b2!.ws.send('hello from b2')
    await until(() => b[0]!.messages.length === 1, 5000, 'b to hear b2')
    assert.deepEqual(b[0]!.messages, ['hello from b2'])
    assert.deepEqual(a[0]!.messages, ['hello from a1'])

    // Binary stays binary.
    const binary = nextDomEvent<MessageEvent>(a[2]!.ws, 'message')
    a[2]!.ws.binaryType = 'arraybuffer'
    a[0]!.ws.send(new Uint8Array([1, 2, 3]))
    const data = (await binary).data
    assert.ok(data instanceof ArrayBuffer)
    assert.deepEqual([...new Uint8Array(data)], [1, 2, 3])
  })

  it('SIGTERM: every client gets 1001, the process exits 0', async () => {
    const peers = [...a, ...b]
    assert.ok(peers.length > 0)
    const closes = peers.map((peer) => nextDomEvent<CloseEvent>(peer.ws, 'close', 10_000))
    const exit = new Promise<number | null>((resolve) => relay.child.once('exit', (code) => resolve(code)))
    relay.child.kill('SIGTERM')
    for (const event of await Promise.all(closes)) {
      assert.equal(event.code, 1001)
      assert.equal(event.wasClean, true)
    }
    assert.equal(await within(exit, 10_000, 'the relay to exit'), 0, relay.output())
  })
})
