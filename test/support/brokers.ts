/**
 * Real brokers for the tests: Debian's redis-server and nats-server, each started on a free port
 * of 127.0.0.1 with its files in a temporary directory, and helpers to stop, kill -9 and restart
 * them (the same port again, so that clients reconnect to it). scripts/ensure-system-deps.mjs
 * installs both; the system services stay stopped.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const REDIS_SERVER = '/usr/bin/redis-server'
export const NATS_SERVER = '/usr/sbin/nats-server'

/**
 * Brokers still running. A test process that ends without stopping them (a timed-out test, an
 * uncaught error) kills them on its way out, so that no broker outlives its test file.
 */
const running = new Set<ChildProcess>()
const killRunning = () => {
  for (const child of running) child.kill('SIGKILL')
}
process.once('exit', killRunning)
// The test runner ends a file whose test timed out with a signal; exit as it asked, brokers first.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killRunning()
    process.exit(128 + (signal === 'SIGTERM' ? 15 : 2))
  })
}

/** How long a broker may take to accept connections before its start counts as failed. */
const READY_TIMEOUT_MS = 15_000

/**
 * A free TCP port: neither broker takes port 0 and reports the port it got, so bind port 0
 * ourselves, read the port the kernel chose and release it. Another process could take it in
 * between; the broker then fails to start and says so, which the readiness wait reports.
 */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  server.close()
  await once(server, 'close')
  return port
}

/**
 * Waits until something on `port` answers `probe` with a reply starting with `expect`. Connecting
 * is not enough: Redis accepts before it has loaded, and the probe proves it serves commands.
 */
async function waitReady(
  port: number,
  probe: string,
  expect: string,
  child: ChildProcess,
  output: () => string,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(
        `broker exited before it was ready (${child.exitCode ?? child.signalCode}):\n${output()}`,
      )
    const answered = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port })
      let received = ''
      const finish = (ok: boolean) => {
        socket.destroy()
        resolve(ok)
      }
      socket.setTimeout(1000, () => finish(false))
      socket.on('error', () => finish(false))
      socket.on('connect', () => {
        if (probe !== '') socket.write(probe)
      })
      socket.on('data', (chunk) => {
        received += chunk.toString('latin1')
        if (received.length >= expect.length) finish(received.startsWith(expect))
      })
    })
    if (answered) return
    if (Date.now() > deadline)
      throw new Error(`broker on port ${port} not ready after ${READY_TIMEOUT_MS} ms:\n${output()}`)
    // Polling a port has no event to wait on; a short pause between attempts keeps it cheap.
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A broker process the test controls. */
export interface Broker {
  readonly port: number
  readonly url: string
  /** nats-server's HTTP monitoring endpoint (`/subsz`, `/connz`…); undefined for Redis. */
  readonly monitorUrl?: string
  /** Stops the broker with SIGKILL (nothing saved, connections reset) and waits for its exit. */
  kill(): Promise<void>
  /** Starts it again on the same port; `wipe` starts from an empty data directory. */
  start(options?: { wipe?: boolean }): Promise<void>
  /** kill() then start(). */
  restart(options?: { wipe?: boolean }): Promise<void>
  /** Stops it and removes its directory. */
  stop(): Promise<void>
}

interface BrokerSpec {
  readonly binary: string
  readonly name: string
  args(port: number, dir: string, monitorPort: number): string[]
  readonly monitored?: boolean
  readonly probe: string
  readonly expect: string
  url(port: number): string
}

async function startBroker(spec: BrokerSpec): Promise<Broker> {
  if (!existsSync(spec.binary))
    throw new Error(
      `${spec.binary} is missing: run node scripts/run-tests.mjs test/bus (it installs ${spec.name})`,
    )
  const port = await freePort()
  let monitorPort = spec.monitored ? await freePort() : 0
  let dir = mkdtempSync(join(tmpdir(), `rally-${spec.name}-`))
  let child: ChildProcess | undefined
  let output = ''

  // A port is free only when it was picked: while the broker is down (a restart), an outgoing
  // connection of a test running alongside may get it as its local port (freePort's ports come
  // from the same ephemeral range), and the broker cannot bind it. The monitoring port is ours to
  // change: a fresh one. The client port is not (clients reconnect to it): it is tried again
  // until its holder lets it go, within the readiness bound.
  const launch = async () => {
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      try {
        return await launchOnce()
      } catch (error) {
        const message = String(error)
        if (!/address already in use/i.test(message) || Date.now() > deadline) throw error
        if (spec.monitored && /monitor/i.test(message)) monitorPort = await freePort()
        else await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
  }

  const launchOnce = async () => {
    output = ''
    const started = spawn(spec.binary, spec.args(port, dir, monitorPort), {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = started
    running.add(started)
    started.once('exit', () => running.delete(started))
    // Kept for the error message when the broker does not come up; bounded.
    const keep = (chunk: Buffer) => {
      if (output.length < 16_384) output += chunk.toString()
    }
    started.stdout?.on('data', keep)
    started.stderr?.on('data', keep)
    await waitReady(port, spec.probe, spec.expect, started, () => output)
  }

  const kill = async () => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = once(running, 'exit')
    running.kill('SIGKILL')
    await exited
  }

  const start = async (options: { wipe?: boolean } = {}) => {
    if (options.wipe) {
      rmSync(dir, { recursive: true, force: true })
      dir = mkdtempSync(join(tmpdir(), `rally-${spec.name}-`))
    }
    await launch()
  }

  await launch()
  return {
    port,
    url: spec.url(port),
    get monitorUrl() {
      return spec.monitored ? `http://127.0.0.1:${monitorPort}` : undefined
    },
    kill,
    start,
    async restart(options = {}) {
      await kill()
      await start(options)
    },
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * redis-server without persistence (`--save ''`, `--appendonly no`): a restart loses every key,
 * which is exactly the case the epoch must reveal.
 */
export function startRedis(): Promise<Broker> {
  return startBroker({
    binary: REDIS_SERVER,
    name: 'redis',
    args: (port, dir) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--protected-mode',
      'no',
    ],
    probe: 'PING\r\n',
    expect: '+PONG',
    url: (port) => `redis://127.0.0.1:${port}`,
  })
}

/**
 * nats-server with JetStream storing in the temporary directory: a restart keeps the streams (the
 * same epoch), a restart with `wipe` loses them (a new epoch). NATS greets with an INFO line.
 */
export function startNats(): Promise<Broker> {
  return startBroker({
    binary: NATS_SERVER,
    name: 'nats',
    args: (port, dir, monitorPort) => [
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '-m',
      String(monitorPort),
      '-js',
      '-sd',
      dir,
    ],
    monitored: true,
    probe: '',
    expect: 'INFO',
    url: (port) => `nats://127.0.0.1:${port}`,
  })
}
