/**
 * permessage-deflate interop with Python's `websockets` (Debian's python3-websockets 10.x, whose
 * default is compression="deflate"): its client against a Rally server and against
 * `rally echo --deflate` (context takeover both ways), and its server against the Rally client.
 * The peers are in ./peers; they report JSON lines on stdout.
 */
import assert from 'node:assert/strict'
import type { Buffer } from 'node:buffer'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { CloseEvent } from '../../src/index.js'
import {
  compressibleBytes,
  compressibleText,
  disposeAll,
  MiB,
  messageQueue,
  once,
  openClient,
  Queue,
  randomBytes,
  randomText,
  startServer,
  withTimeout,
} from './helpers.js'

const PYTHON = '/usr/bin/python3'
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PEERS = fileURLToPath(new URL('./peers/', import.meta.url))

const children = new Set<ChildProcess>()

after(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit', 3000).catch(() => {})
    }
  }
  await disposeAll()
})

before(() => {
  const probe = spawnSync(PYTHON, ['-c', 'import websockets; print(websockets.__version__)'], {
    encoding: 'utf8',
  })
  assert.equal(
    probe.status,
    0,
    `python3-websockets is required (${PYTHON} -c "import websockets" failed: ${probe.stderr}); ` +
      'scripts/ensure-system-deps.mjs installs it (node scripts/run-tests.mjs --only deflate)',
  )
})

interface Line {
  event?: string
  [key: string]: unknown
}

/** Spawns a process and parses its stdout as JSON lines (other lines are kept as `raw`). */
function run(command: string, args: string[]) {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(child)
  const lines = new Queue<Line>()
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Line)
    } catch {
      lines.push({ event: 'raw', line })
    }
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.once('exit', (code) =>
    lines.fail(new Error(`${command} exited with ${code}; stderr: ${stderr.slice(-2000)}`)),
  )
  return { child, lines, exited, stderr: () => stderr }
}

/** Runs the python client against `url` and checks every report. */
async function pythonClient(url: string): Promise<Line> {
  const { lines, exited, stderr } = run(PYTHON, [`${PEERS}client.py`, url])
  const open = await lines.next(10_000, 'the python client to open')
  assert.equal(open.event, 'open', JSON.stringify(open))
  let roundTrips = 0
  while (true) {
    const line = await lines.next(30_000, 'a python report')
    if (line.event === 'error') assert.fail(`python client: ${line.error}\n${line.trace}`)
    if (line.event === 'closed') {
      assert.equal(line.code, 1000)
      continue
    }
    if (line.event === 'done') break
    assert.equal(line.equal, true, `echo differs: ${JSON.stringify(line)}`)
    assert.equal(line.sameType, true, `echo type differs: ${JSON.stringify(line)}`)
    roundTrips++
  }
  assert.equal(roundTrips, 7 * 4 + 1)
  assert.equal(await withTimeout(exited, 10_000, 'python client exit'), 0, stderr())
  return open
}

describe('python websockets client → Rally', { timeout: 90_000 }, () => {
  test('Rally server with perMessageDeflate: true', { timeout: 60_000 }, async () => {
    const serverExtensions: string[] = []
    const { url } = await startServer({
      perMessageDeflate: true,
      decodeText: false,
      open(ws) {
        serverExtensions.push(ws.extensions)
      },
      message(ws, data, isBinary) {
        ws.send(data, { binary: isBinary })
      },
    })
    const open = await pythonClient(url)
    const response = (open.responseExtensions as string[]).join(', ')
    assert.match(response, /^permessage-deflate/)
    assert.equal(response, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover')
    assert.deepEqual(open.extensions, ['permessage-deflate'])
    assert.match((open.requestExtensions as string[]).join(', '), /permessage-deflate/)
    assert.deepEqual(serverExtensions, [response])
  })

  test('rally echo --deflate (context takeover as the client offers it)', { timeout: 60_000 }, async () => {
    const echo = run(process.execPath, [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'echo',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--deflate',
    ])
    try {
      const ready = await echo.lines.next(20_000, 'rally echo to listen')
      const match = /^listening on (ws:\/\/127\.0\.0\.1:\d+)$/.exec(String(ready.line))
      assert.ok(match, `unexpected first line: ${JSON.stringify(ready)}`)
      const open = await pythonClient(`${match[1]}/`)
      const response = (open.responseExtensions as string[]).join(', ')
      assert.match(response, /^permessage-deflate/)
      assert.doesNotMatch(response, /no_context_takeover/, 'echo --deflate keeps context')
    } finally {
      echo.child.kill('SIGTERM')
      assert.equal(await withTimeout(echo.exited, 10_000, 'rally echo to exit'), 0, echo.stderr())
    }
  })
})

describe('Rally client → python websockets server', { timeout: 60_000 }, () => {
  test('text and binary up to 4 MiB with the default offer', { timeout: 45_000 }, async () => {
    const server = run(PYTHON, [`${PEERS}server.py`])
    try {
      const listening = await server.lines.next(10_000, 'the python server to listen')
      assert.equal(listening.event, 'listening', JSON.stringify(listening))
      const ws = await openClient(`ws://127.0.0.1:${listening.port}/deflate`, { maxPayload: 64 * MiB })
      assert.match(ws.extensions, /^permessage-deflate/)
      const connection = await server.lines.next(5000, 'the python connection report')
      assert.equal(connection.event, 'connection')
      assert.deepEqual(connection.extensions, ['permessage-deflate'])
      assert.deepEqual(connection.requestExtensions, ['permessage-deflate; client_max_window_bits'])
      assert.equal((connection.responseExtensions as string[]).join(', '), ws.extensions)

      const inbox = messageQueue(ws)
      for (const size of [0, 1, 1000, 2000, 65 * 1024, MiB, 4 * MiB]) {
        const cases: [string, string | Buffer][] = [
          ['compressible text', compressibleText(size)],
          ['random text', randomText(size)],
          ['compressible binary', compressibleBytes(size)],
          ['random binary', randomBytes(size)],
        ]
        for (const [kind, payload] of cases) {
          ws.send(payload)
          const echoed = await inbox.next(15_000, `echo of ${kind} ${size} B`)
          if (typeof payload === 'string') {
            assert.equal(echoed.binary, false)
            assert.ok(echoed.text === payload, `${kind} ${size} B differs`)
          } else {
            assert.equal(echoed.binary, true)
            assert.ok(echoed.data.equals(payload), `${kind} ${size} B differs`)
          }
        }
      }
      ws.close(1000)
      const closed = await once<CloseEvent>(ws, 'close', 5000)
      assert.equal(closed.code, 1000)
      const report = await server.lines.next(5000, 'the python close report')
      assert.deepEqual(report, { event: 'closed', code: 1000 })
    } finally {
      server.child.stdin!.end()
      await withTimeout(server.exited, 10_000, 'python server exit').catch(() => server.child.kill('SIGKILL'))
    }
  })
})
