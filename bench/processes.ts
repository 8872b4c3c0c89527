/**
 * The child processes of a run: servers under test (bench/servers/*, control over stdin, see
 * bench/servers/common.ts) and the load generator; every one is killed when the runner exits,
 * whatever the reason.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { startRedis } from '../test/support/brokers.js'
import { type Certificate, makeCertificate } from '../test/support/tls.js'
import type { Options } from './cli-options.js'
import { BENCH, BUN_BINARY, LOADGEN_BINARY, RESULTS, ROOT } from './paths.js'
import { type Scenario, SERVERS, type ServerId, subjectOf } from './scenarios.js'

const children = new Set<ChildProcess>()

export function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
  }
  children.clear()
}

process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping every child process\n`)
    killAll()
    process.exit(130)
  })
}

export function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Lines from a stream, with a way to wait for one that matches. */
export class LineReader {
  private buffer = ''
  readonly lines: string[] = []
  private waiters: { pattern: RegExp; resolve: (match: RegExpMatchArray) => void }[] = []

  constructor(stream: NodeJS.ReadableStream) {
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      this.buffer += chunk
      let newline = this.buffer.indexOf('\n')
      while (newline !== -1) {
        const line = this.buffer.slice(0, newline)
        this.buffer = this.buffer.slice(newline + 1)
        this.lines.push(line)
        this.waiters = this.waiters.filter((waiter) => {
          const match = line.match(waiter.pattern)
          if (match !== null) waiter.resolve(match)
          return match === null
        })
        newline = this.buffer.indexOf('\n')
      }
    })
  }

  /** Resolves with the first line (seen from now on) matching `pattern`; rejects after `ms`. */
  next(pattern: RegExp, ms: number, what: string): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
      this.waiters.push({
        pattern,
        resolve: (match) => {
          clearTimeout(timer)
          resolve(match)
        },
      })
    })
  }

  get text(): string {
    return this.lines.join('\n') + this.buffer
  }
}

export interface RunningServer {
  id: ServerId
  pid: number
  port: number
  /** Every process and port of it: one, or each node of a cluster (the first is `pid`, `port`). */
  pids: number[]
  ports: number[]
  /** Server arguments it was started with (servers are reused by scenarios with the same). */
  key: string
  alive(): boolean
  gc(): Promise<void>
  stop(): Promise<void>
}

export function serverKey(id: ServerId, scenario: Scenario): string {
  return [id, ...scenario.serverArgs].join(' ')
}

export function pinned(cpu: number, command: string, args: string[], options: Options): [string, string[]] {
  return options.pin ? ['taskset', ['-c', String(cpu), command, ...args]] : [command, args]
}

export async function startServer(
  id: ServerId,
  scenario: Scenario,
  options: Options,
): Promise<RunningServer> {
  const spec = SERVERS[id]
  const env: Record<string, string | undefined> = { ...process.env }
  for (const [name, value] of Object.entries(spec.env)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  if (spec.runtime === 'bun') return startBunServer(id, scenario, options, env)
  if (spec.nodes !== undefined) return startCluster(id, scenario, options, env, spec.nodes)
  const tlsArgs = spec.tls === true ? certificateArgs() : []
  const nodeArgs = ['--expose-gc', '--import', 'tsx']
  if (options.cpuProf && id === subjectOf(scenario)) {
    // One directory per server: the main thread and tsx's loader thread each write a profile.
    const dir = join(RESULTS, 'profiles', `${serverKey(id, scenario).replace(/\W+/g, '-')}-${Date.now()}`)
    mkdirSync(dir, { recursive: true })
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', dir)
  }
  const [command, args] = pinned(
    0,
    process.execPath,
    [...nodeArgs, join(BENCH, 'servers', spec.script), ...spec.args, ...tlsArgs, ...scenario.serverArgs],
    options,
  )
  return superviseServer(id, scenario, command, args, env)
}

/** One certificate for every TLS server of a run, made when the first needs it. */
let certificate: Certificate | undefined
function certificateArgs(): string[] {
  if (certificate === undefined) {
    certificate = makeCertificate()
    const made = certificate
    process.once('exit', () => made.dispose())
  }
  return ['--cert', certificate.certFile, '--key', certificate.keyFile]
}

/**
 * startRedis picks a free port, closes it and lets redis-server bind it: another process (a load
 * generator choosing its local ports) can take it in between, and the broker then fails to
 * start. A few attempts, each on a new port.
 */
async function redisOnAFreePort(): Promise<Awaited<ReturnType<typeof startRedis>>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRedis()
    } catch (error) {
      if (attempt === 3) throw error
    }
  }
}

/**
 * A cluster: a redis-server on a free port (test/support/brokers.ts, as the cluster tests start
 * it), then `nodes` processes of the server script, each told `--redis URL`, all on the server's
 * CPU. One RunningServer for all of them: its CPU time and RSS are the sums over the nodes.
 */
async function startCluster(
  id: ServerId,
  scenario: Scenario,
  options: Options,
  env: Record<string, string | undefined>,
  nodes: number,
): Promise<RunningServer> {
  const spec = SERVERS[id]
  const redis = await redisOnAFreePort()
  const started: RunningServer[] = []
  try {
    for (let i = 0; i < nodes; i++) {
      const [command, args] = pinned(
        0,
        process.execPath,
        [
          '--expose-gc',
          '--import',
          'tsx',
          join(BENCH, 'servers', spec.script),
          ...spec.args,
          ...scenario.serverArgs,
          '--redis',
          redis.url,
        ],
        options,
      )
      started.push(await superviseServer(id, scenario, command, args, env))
    }
  } catch (error) {
    await Promise.all(started.map((node) => node.stop()))
    await redis.stop()
    throw error
  }
  return {
    id,
    pid: started[0]!.pid,
    port: started[0]!.port,
    pids: started.map((node) => node.pid),
    ports: started.map((node) => node.port),
    key: serverKey(id, scenario),
    alive: () => started.every((node) => node.alive()),
    async gc() {
      await Promise.all(started.map((node) => node.gc()))
    },
    async stop() {
      await Promise.all(started.map((node) => node.stop()))
      await redis.stop()
    },
  }
}

/** Bun's server runs its TypeScript itself; no profiling, no --expose-gc (it collects with Bun.gc). */
function startBunServer(
  id: ServerId,
  scenario: Scenario,
  options: Options,
  env: Record<string, string | undefined>,
): Promise<RunningServer> {
  const spec = SERVERS[id]
  const [command, args] = pinned(
    0,
    bunBinary(),
    [join(BENCH, 'servers', spec.script), ...spec.args, ...scenario.serverArgs],
    options,
  )
  return superviseServer(id, scenario, command, args, env)
}

/** Starts a server process, waits for its `port N` line and returns its controls. */
async function superviseServer(
  id: ServerId,
  scenario: Scenario,
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
): Promise<RunningServer> {
  const child = track(spawn(command, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] }))
  const out = new LineReader(child.stdout!)
  const err = new LineReader(child.stderr!)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let port: number
  try {
    const ready = out.next(/^port (\d+)$/, 30_000, `${id} to listen`)
    const failed = exited.then(() => {
      throw new Error(`${id} server exited: ${err.text.slice(-2000)}`)
    })
    port = Number((await Promise.race([ready, failed]))[1])
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }
  return {
    id,
    pid: child.pid!,
    port,
    pids: [child.pid!],
    ports: [port],
    key: serverKey(id, scenario),
    alive: () => child.exitCode === null && child.signalCode === null,
    async gc() {
      const done = out.next(/^gc done$/, 30_000, `${id} gc`)
      child.stdin!.write('gc\n')
      await done
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.stdin!.end('exit\n')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** The load generator's JSON report. */
export interface LoadgenResult {
  mode: string
  conns: number
  window: number
  opened: number
  open_at_end: number
  connect_s: number
  payload_bytes: number
  frame_bytes: number
  wall_s: number
  count: number
  per_s: number
  rx_bytes: number
  rx_bytes_per_s: number
  latency_samples: number
  latency_us: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number }
  server_cpu_s: number
  loadgen_cpu_s: number
  loadgen_cpu_util: number
  /** The server's RSS in the measured window (KiB; -1 without --server-pid): edges and peak. */
  server_rss_start_kib: number
  server_rss_end_kib: number
  server_rss_peak_kib: number
  server_rss_samples: number
  errors: number
  server_closes: number
  handshake_failures: number
  failed_at_open: number
  stalls: number
  lost: number
  /** Frames from the server with RSV1 set (permessage-deflate), over the whole run. */
  compressed_frames?: number
}

export interface LoadgenRun {
  child: ChildProcess
  stderr: LineReader
  result: Promise<LoadgenResult>
}

export function startLoadgen(args: string[], timeoutMs: number, options: Options): LoadgenRun {
  const [command, argv] = pinned(1, LOADGEN_BINARY, args, options)
  return runLoadgen(command, argv, args, timeoutMs)
}

/**
 * A Node.js load generator (bench/loadgen/SCRIPT, for HTTP transports): the same report on stdout,
 * the same CPU as the C one.
 */
export function startNodeLoadgen(
  script: string,
  args: string[],
  timeoutMs: number,
  options: Options,
): LoadgenRun {
  const [command, argv] = pinned(
    1,
    process.execPath,
    ['--import', 'tsx', join(BENCH, 'loadgen', script), ...args],
    options,
  )
  return runLoadgen(command, argv, [script, ...args], timeoutMs)
}

function runLoadgen(command: string, argv: string[], args: string[], timeoutMs: number): LoadgenRun {
  const child = track(spawn(command, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }))
  const stderr = new LineReader(child.stderr!)
  let stdout = ''
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (chunk: string) => {
    stdout += chunk
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const result = new Promise<LoadgenResult>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      const line = stdout.trim().split('\n').pop() ?? ''
      if (code !== 0 || !line.startsWith('{')) {
        reject(new Error(`loadgen ${args.join(' ')} failed (${code ?? signal}): ${stderr.text.slice(-1000)}`))
        return
      }
      resolve(JSON.parse(line) as LoadgenResult)
    })
  })
  return { child, stderr, result }
}

/**
 * The Bun that runs bench/servers/bun.ts: RALLY_BENCH_BUN when set (a Bun installed elsewhere; or
 * a path that does not exist, to see a run without Bun), else the `bun` dev dependency's.
 */
export function bunBinary(): string {
  const chosen = process.env.RALLY_BENCH_BUN
  return chosen === undefined || chosen === '' ? BUN_BINARY : chosen
}

/**
 * Whether Bun can run here (the `bun` dev dependency downloads a native binary for the platform at
 * install; it may be missing, or not run on this system): its version, or why not.
 */
export function probeBun(binary: string = bunBinary()): { version: string } | { reason: string } {
  try {
    const version = execFileSync(binary, ['--version'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: 'pipe',
    })
    return { version: version.trim() }
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0]! : String(error)
    return { reason: message }
  }
}
