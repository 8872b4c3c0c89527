/**
 * Rally's server benchmarks, side by side with `ws` 8 (plain and with bufferutil), `ws` with a
 * pre-framed broadcast buffer, and a raw `node:net` server (the limit of one Node.js thread).
 *
 *   npm run bench                  full run (about 12 minutes), writes docs/benchmarks.md + .svg
 *   npm run bench -- --quick       short run (under a minute), for development; no docs unless --docs
 *   npm run bench -- --help        every option (HELP below)
 *
 * `rally bench ARGS` (src/cli/bench.ts) runs this script with ARGS, from a clone only: the npm
 * package leaves bench/ and the dev dependencies out.
 *
 * How it works: a C load generator (bench/loadgen/loadgen.c, built here with the machine's `cc`)
 * drives each server over 127.0.0.1. Servers are child processes (bench/servers/*.ts), pinned to
 * CPU 0; the load generator is pinned to CPU 1. For each measured window the load generator
 * reads the server's utime+stime from /proc/PID/stat and its own CPU time (getrusage), so the
 * headline figure is work per server CPU-second (fair on a shared, noisy machine), reported with
 * raw throughput and the server's peak RSS over the window (/proc/PID/statm, sampled by the load
 * generator too). Every scenario runs several repetitions, servers interleaved (A B C, C B A, ...),
 * and the Rally/peer ratio is computed pair by pair, repetition by repetition. Reported: median
 * [min–max]. Raw results: bench/results/bench.json (bench-quick.json for --quick).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, totalmem } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { constants, deflateRawSync } from 'node:zlib'

// ------------------------------------------------------------------ paths, options

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const BENCH = join(ROOT, 'bench')
const LOADGEN_SOURCE = join(BENCH, 'loadgen', 'loadgen.c')
const LOADGEN_BINARY = join(BENCH, 'loadgen', 'build', 'loadgen')
const RESULTS = join(BENCH, 'results')
const DOCS = join(ROOT, 'docs')
const NOTES = join(BENCH, 'profile-notes.md')

type ServerId = 'rally' | 'ws' | 'ws-native' | 'ws-prepared' | 'raw'
type Kind = 'throughput' | 'latency' | 'memory'

/**
 * Every scenario id, in the order they run: scenarios with the same server arguments follow one
 * another, so that they share servers.
 */
const SCENARIO_IDS = [
  'echo-32',
  'echo-16k',
  'rtt-32',
  'broadcast-1k',
  'broadcast-10k',
  'handshake',
  'deflate-1k',
  'deflate-1k-defaults',
  'idle-10k',
  'idle-max',
]

interface Options {
  quick: boolean
  reps: number
  memoryReps: number
  warmup: number
  duration: number
  only: string[] | undefined
  servers: ServerId[] | undefined
  /** Undefined: only for a full run (not --quick, nor --only, --servers, --reps). */
  docs: boolean | undefined
  cpuProf: boolean
  pin: boolean
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes('--quick')
  const options: Options = {
    quick,
    reps: quick ? 2 : 5,
    memoryReps: quick ? 1 : 3,
    warmup: quick ? 0.15 : 0.75,
    duration: quick ? 0.3 : 2,
    only: undefined,
    servers: undefined,
    docs: undefined,
    cpuProf: false,
    pin: true,
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--quick') continue
    else if (arg === '--reps') options.reps = options.memoryReps = Number(argv[++i])
    else if (arg === '--only') options.only = String(argv[++i]).split(',')
    else if (arg === '--servers') options.servers = String(argv[++i]).split(',') as ServerId[]
    else if (arg === '--docs') options.docs = true
    else if (arg === '--no-docs') options.docs = false
    else if (arg === '--cpu-prof') options.cpuProf = true
    else if (arg === '--no-pin') options.pin = false
    else if (arg === '--duration') options.duration = Number(argv[++i])
    else if (arg === '--warmup') options.warmup = Number(argv[++i])
    else throw new Error(`unknown argument ${arg} (see --help)`)
  }
  if (!Number.isInteger(options.reps) || options.reps < 1)
    throw new Error('--reps must be a positive integer')
  return options
}

// ------------------------------------------------------------------ servers and scenarios

interface ServerSpec {
  label: string
  script: string
  args: string[]
  /** Environment changes: undefined deletes the variable. */
  env: Record<string, string | undefined>
}

const NO_NATIVE = { WS_NO_BUFFER_UTIL: '1', WS_NO_UTF_8_VALIDATE: '1' }
const NATIVE = { WS_NO_BUFFER_UTIL: undefined, WS_NO_UTF_8_VALIDATE: undefined }

const SERVERS: Record<ServerId, ServerSpec> = {
  rally: { label: 'Rally', script: 'rally.ts', args: [], env: NO_NATIVE },
  ws: { label: 'ws', script: 'ws.ts', args: [], env: NO_NATIVE },
  'ws-native': { label: 'ws + bufferutil', script: 'ws.ts', args: [], env: NATIVE },
  'ws-prepared': {
    label: 'ws pre-framed',
    script: 'ws.ts',
    args: ['--broadcast', 'prepared'],
    env: NATIVE,
  },
  raw: { label: 'raw node:net', script: 'raw.ts', args: [], env: NO_NATIVE },
}

const PEER_IDS = Object.keys(SERVERS).filter((id) => id !== 'rally')

const HELP = `Usage: npm run bench -- [options]    (or, from a clone: rally bench [options])

Rally's server benchmarks next to ws (plain and with bufferutil), ws pre-framed and a raw
node:net server, driven by a C load generator (bench/loadgen, built with cc). A full run takes
about 12 minutes and writes docs/benchmarks.md and docs/benchmarks.svg; raw results go to
bench/results/.

Options:
  --quick              short run (under a minute) for development; no docs unless --docs
  --reps N             repetitions per scenario (default 5, quick 2; memory 3, quick 1)
  --duration S         seconds measured per repetition (default 2, quick 0.3)
  --warmup S           seconds of load before each measured window (default 0.75, quick 0.15)
  --only ID,...        these scenarios only (ids below)
  --servers ID,...     these peers only, always with rally: ${PEER_IDS.join(', ')}
  --docs, --no-docs    write the report or not (default: only after a full run; partial runs
                       save bench/results/bench-partial.json)
  --cpu-prof           CPU-profile each Rally server (bench/results/profiles/)
  --no-pin             do not pin the server to CPU 0 and the load generator to CPU 1
  --render [FILE]      write docs/benchmarks.md and .svg again from saved results (default
                       bench/results/bench.json), e.g. after editing bench/profile-notes.md
  --help               this text

Scenarios, in the order they run (--quick leaves idle-max out unless --only names it):
${SCENARIO_IDS.map((id) => `  ${id}`).join('\n')}`

/** Targets from issue 7: Rally/peer on the headline figure (min for higher-is-better, max else). */
interface Targets {
  vsWs?: number
  vsRaw?: number
  /** Rally/ws on the server's peak RSS in the measured window (a maximum: lower is better). */
  rssVsWs?: number
}

interface Scenario {
  id: string
  title: string
  kind: Kind
  /** What is counted, singular and plural: message(s), deliveries, handshakes. */
  unit: string
  units: string
  servers: ServerId[]
  serverArgs: string[]
  /** Load generator arguments (port, pid and timing are added). */
  loadgen: string[]
  /** Idle scenarios: connections to hold. */
  connections?: number
  /** Repetitions, when not the default for its kind. */
  reps?: number
  targets?: Targets
  note: string
}

const OFFER_FAIR = 'permessage-deflate; client_no_context_takeover; server_no_context_takeover'
const OFFER_BROWSER = 'permessage-deflate; client_max_window_bits'

function scenarios(
  options: Options,
  files: { text: string; deflated: string },
  maxConns: number,
): Scenario[] {
  const echoServers: ServerId[] = ['rally', 'ws', 'ws-native', 'raw']
  const broadcastServers: ServerId[] = ['rally', 'ws', 'ws-native', 'ws-prepared', 'raw']
  const deflateServers: ServerId[] = ['rally', 'ws', 'ws-native']
  const idleBig = Math.min(19_900, maxConns)
  const list: Scenario[] = [
    {
      id: 'echo-32',
      title: 'echo 32 B binary, 100 conns × 16 in flight',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'echo', '--conns', '100', '--window', '16', '--size', '32'],
      targets: { vsWs: 2, vsRaw: 0.7 },
      note: 'small messages: per-message overhead',
    },
    {
      id: 'echo-16k',
      title: 'echo 16 KiB binary, 100 conns × 4 in flight',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'echo', '--conns', '100', '--window', '4', '--size', '16384'],
      targets: { vsWs: 1, vsRaw: 0.8 },
      note: 'large messages: unmasking and copying',
    },
    {
      id: 'rtt-32',
      title: 'round trip 32 B, 1 conn × 1 in flight',
      kind: 'latency',
      unit: 'msg',
      units: 'msgs',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'echo', '--conns', '1', '--window', '1', '--size', '32'],
      targets: { vsWs: 1, vsRaw: 1.05 },
      note: 'latency of an idle server: p50 round trip',
    },
    {
      id: 'deflate-1k',
      title: 'echo 1 KiB JSON text, permessage-deflate (no context takeover), 100 conns × 8',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: deflateServers,
      serverArgs: ['--deflate', 'fair'],
      loadgen: [
        '--mode',
        'echo',
        '--conns',
        '100',
        '--window',
        '8',
        '--text',
        '--deflate-file',
        files.deflated,
        '--offer',
        OFFER_FAIR,
      ],
      // The deflate issue: faster than ws + bufferutil at no more memory.
      targets: { vsWs: 1.5, rssVsWs: 1 },
      note: 'both servers with the same parameters: no context takeover either way, level 1, threshold 1024',
    },
    {
      id: 'deflate-1k-defaults',
      title: 'echo 1 KiB JSON text, permessage-deflate, servers’ defaults, browser offer',
      kind: 'throughput',
      unit: 'msg',
      units: 'msgs',
      servers: deflateServers,
      serverArgs: ['--deflate', 'default'],
      loadgen: [
        '--mode',
        'echo',
        '--conns',
        '100',
        '--window',
        '8',
        '--text',
        '--deflate-file',
        files.deflated,
        '--offer',
        OFFER_BROWSER,
      ],
      note: '`perMessageDeflate: true` on both; the client offers what browsers offer. ws then compresses with context takeover at zlib’s default level, Rally without (its default)',
    },
    {
      id: 'broadcast-1k',
      title: 'broadcast 64 B to 1,000 subscribers, 8 broadcasts in flight',
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: broadcastServers,
      serverArgs: [],
      loadgen: ['--mode', 'sink', '--conns', '1000', '--window', '8'],
      note: 'one publisher connection; the server fans each message out',
    },
    {
      id: 'broadcast-10k',
      title: 'broadcast 64 B to 10,000 subscribers, 8 broadcasts in flight',
      kind: 'throughput',
      unit: 'delivery',
      units: 'deliveries',
      servers: broadcastServers,
      serverArgs: [],
      loadgen: ['--mode', 'sink', '--conns', '10000', '--window', '8'],
      targets: { vsWs: 3, vsRaw: 0.7 },
      note: 'one publisher connection; the server fans each message out',
    },
    {
      id: 'handshake',
      title: 'handshakes, 32 concurrent (connect, upgrade, 101, reset)',
      kind: 'throughput',
      unit: 'handshake',
      units: 'handshakes',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'handshake', '--conns', '32'],
      targets: { vsWs: 1.2, vsRaw: 0.9 },
      note: 'the 101 is counted; then the client resets the connection (no TIME_WAIT)',
    },
    {
      id: 'idle-10k',
      title: 'idle memory per connection, 10,000 connections',
      kind: 'memory',
      unit: 'B/conn',
      units: 'B/conn',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'idle'],
      connections: options.quick ? 2_000 : 10_000,
      targets: { vsWs: 0.9, vsRaw: 1.1 },
      note: 'server RSS after − before (both after a full GC) ÷ connections',
    },
    {
      id: 'idle-max',
      title: `idle memory per connection, ${idleBig.toLocaleString('en-US')} connections`,
      kind: 'memory',
      unit: 'B/conn',
      units: 'B/conn',
      servers: echoServers,
      serverArgs: [],
      loadgen: ['--mode', 'idle'],
      connections: options.quick ? 4_000 : idleBig,
      // Opening 19,900 connections takes a while, and the figure varies little.
      reps: Math.min(2, options.memoryReps),
      note: 'as many as the per-process open-file cap allows',
    },
  ]
  list.sort((a, b) => SCENARIO_IDS.indexOf(a.id) - SCENARIO_IDS.indexOf(b.id))
  if (options.quick) {
    // Smaller where connecting takes the time; idle-max is left out unless asked for.
    const broadcast = list.find((s) => s.id === 'broadcast-10k')!
    broadcast.title = 'broadcast 64 B to 3,000 subscribers (quick), 8 broadcasts in flight'
    broadcast.loadgen = ['--mode', 'sink', '--conns', '3000', '--window', '8']
    list.find((s) => s.id === 'idle-10k')!.title = 'idle memory per connection, 2,000 connections (quick)'
    if (options.only === undefined)
      list.splice(
        list.findIndex((s) => s.id === 'idle-max'),
        1,
      )
    else
      list.find((s) => s.id === 'idle-max')!.title = 'idle memory per connection, 4,000 connections (quick)'
  }
  let selected = options.only === undefined ? list : list.filter((s) => options.only!.includes(s.id))
  if (options.only !== undefined) {
    const unknown = options.only.filter((id) => !list.some((s) => s.id === id))
    if (unknown.length > 0)
      throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${list.map((s) => s.id).join(', ')}`)
  }
  if (options.servers !== undefined) {
    const wanted = new Set<ServerId>(['rally', ...options.servers])
    selected = selected.map((s) => ({ ...s, servers: s.servers.filter((id) => wanted.has(id)) }))
  }
  return selected
}

// ------------------------------------------------------------------ child processes

const children = new Set<ChildProcess>()

function killAll(): void {
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

function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Lines from a stream, with a way to wait for one that matches. */
class LineReader {
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

interface RunningServer {
  id: ServerId
  pid: number
  port: number
  /** Server arguments it was started with (servers are reused by scenarios with the same). */
  key: string
  alive(): boolean
  gc(): Promise<void>
  stop(): Promise<void>
}

function repsOf(scenario: Scenario, options: Options): number {
  return scenario.reps ?? (scenario.kind === 'memory' ? options.memoryReps : options.reps)
}

function serverKey(id: ServerId, scenario: Scenario): string {
  return [id, ...scenario.serverArgs].join(' ')
}

function pinned(cpu: number, command: string, args: string[], options: Options): [string, string[]] {
  return options.pin ? ['taskset', ['-c', String(cpu), command, ...args]] : [command, args]
}

async function startServer(id: ServerId, scenario: Scenario, options: Options): Promise<RunningServer> {
  const spec = SERVERS[id]
  const env: Record<string, string | undefined> = { ...process.env }
  for (const [name, value] of Object.entries(spec.env)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  const nodeArgs = ['--expose-gc', '--import', 'tsx']
  if (options.cpuProf && id === 'rally') {
    // One directory per server: the main thread and tsx's loader thread each write a profile.
    const dir = join(RESULTS, 'profiles', `${serverKey(id, scenario).replace(/\W+/g, '-')}-${Date.now()}`)
    mkdirSync(dir, { recursive: true })
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', dir)
  }
  const [command, args] = pinned(
    0,
    process.execPath,
    [...nodeArgs, join(BENCH, 'servers', spec.script), ...spec.args, ...scenario.serverArgs],
    options,
  )
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
interface LoadgenResult {
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
}

interface LoadgenRun {
  child: ChildProcess
  stderr: LineReader
  result: Promise<LoadgenResult>
}

function startLoadgen(args: string[], timeoutMs: number, options: Options): LoadgenRun {
  const [command, argv] = pinned(1, LOADGEN_BINARY, args, options)
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

function readRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status)
  if (match === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1])
}

// ------------------------------------------------------------------ measurements

interface Sample {
  rep: number
  /** Headline: per server CPU-second (throughput), p50 µs (latency), bytes/conn (memory). */
  headline: number
  perCpu: number
  perSecond: number
  p50: number
  p99: number
  serverCpuUtil: number
  loadgenCpuUtil: number
  /** Throughput and latency: the server's peak RSS over the measured window, KiB. */
  serverRssKiB?: number
  bytesPerConn?: number
  rssBeforeKiB?: number
  rssAfterKiB?: number
  warnings: string[]
  raw: LoadgenResult
}

function warningsOf(result: LoadgenResult, scenario: Scenario): string[] {
  const warnings: string[] = []
  if (result.mode !== 'handshake' && result.opened < result.conns)
    warnings.push(`${result.conns - result.opened} of ${result.conns} connections failed to open`)
  if (result.mode !== 'handshake' && result.mode !== 'idle' && result.open_at_end < result.opened)
    warnings.push(`${result.opened - result.open_at_end} connections closed during the run`)
  if (result.errors > 0) warnings.push(`${result.errors} socket errors`)
  if (result.mode === 'handshake' && result.handshake_failures > 0)
    warnings.push(`${result.handshake_failures} failed handshakes`)
  if (result.stalls > 0) warnings.push(`${result.stalls} stalls (${result.lost} deliveries lost)`)
  if (scenario.kind !== 'memory' && result.count === 0) warnings.push('nothing was measured')
  if (scenario.kind !== 'memory' && result.server_cpu_s <= 0) warnings.push('no server CPU time measured')
  if (scenario.kind !== 'memory' && !(result.server_rss_peak_kib > 0)) warnings.push('no server RSS measured')
  return warnings
}

async function measureThroughput(
  server: RunningServer,
  scenario: Scenario,
  rep: number,
  options: Options,
): Promise<Sample> {
  const args = [
    ...scenario.loadgen,
    '--port',
    String(server.port),
    '--server-pid',
    String(server.pid),
    '--warmup',
    String(options.warmup),
    '--duration',
    String(options.duration),
  ]
  const run = startLoadgen(args, (options.warmup + options.duration) * 1000 + 90_000, options)
  const raw = await run.result
  const cpu = raw.server_cpu_s
  const perCpu = cpu > 0 ? raw.count / cpu : Number.NaN
  return {
    rep,
    headline: scenario.kind === 'latency' ? raw.latency_us.p50 : perCpu,
    perCpu,
    perSecond: raw.per_s,
    p50: raw.latency_us.p50,
    p99: raw.latency_us.p99,
    serverCpuUtil: cpu / raw.wall_s,
    loadgenCpuUtil: raw.loadgen_cpu_util,
    serverRssKiB: raw.server_rss_peak_kib > 0 ? raw.server_rss_peak_kib : Number.NaN,
    warnings: warningsOf(raw, scenario),
    raw,
  }
}

async function measureMemory(
  id: ServerId,
  scenario: Scenario,
  rep: number,
  options: Options,
): Promise<Sample> {
  const server = await startServer(id, scenario, options)
  try {
    await server.gc()
    await sleep(300)
    await server.gc()
    const before = readRssKiB(server.pid)
    const connections = scenario.connections ?? 1000
    const run = startLoadgen(
      [
        ...scenario.loadgen,
        '--conns',
        String(connections),
        '--port',
        String(server.port),
        '--duration',
        '120',
      ],
      180_000,
      options,
    )
    const early = run.result.then((r) => {
      throw new Error(`loadgen idle ended early: ${JSON.stringify(r)}`)
    })
    await Promise.race([run.stderr.next(/^ready (\d+)$/, 90_000, 'idle connections'), early])
    early.catch(() => {})
    await sleep(options.quick ? 300 : 1000)
    await server.gc()
    await sleep(200)
    await server.gc()
    const after = readRssKiB(server.pid)
    run.child.kill('SIGTERM')
    const raw = await run.result.catch((error: unknown) => {
      throw error
    })
    const bytesPerConn = raw.opened > 0 ? ((after - before) * 1024) / raw.opened : Number.NaN
    return {
      rep,
      headline: bytesPerConn,
      perCpu: Number.NaN,
      perSecond: Number.NaN,
      p50: Number.NaN,
      p99: Number.NaN,
      serverCpuUtil: Number.NaN,
      loadgenCpuUtil: Number.NaN,
      bytesPerConn,
      rssBeforeKiB: before,
      rssAfterKiB: after,
      warnings: warningsOf(raw, scenario),
      raw,
    }
  } finally {
    await server.stop()
  }
}

// ------------------------------------------------------------------ statistics

interface Spread {
  median: number
  min: number
  max: number
  n: number
}

function spread(values: number[]): Spread {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }
  const mid = finite.length >> 1
  const median = finite.length % 2 === 1 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2
  return { median, min: finite[0]!, max: finite[finite.length - 1]!, n: finite.length }
}

interface ServerSummary {
  id: ServerId
  label: string
  headline: Spread
  perCpu: Spread
  perSecond: Spread
  p50: Spread
  p99: Spread
  serverCpuUtil: Spread
  loadgenCpuUtil: Spread
  /** Rally/this on the headline figure, pair by pair (undefined for Rally itself). */
  ratio?: Spread
  /** Rally/this on raw throughput (throughput scenarios). */
  ratioPerSecond?: Spread
  /**
   * Peak server RSS in the measured window, KiB, and Rally/this on it (throughput and latency
   * scenarios). Optional: results saved before it was measured have neither.
   */
  rss?: Spread
  ratioRss?: Spread
}

interface ScenarioResult {
  scenario: Scenario
  samples: Record<string, Sample[]>
  summary: ServerSummary[]
}

function pairRatios(
  scenario: Scenario,
  samples: Record<string, Sample[]>,
  peer: ServerId,
  key: 'headline' | 'perSecond' | 'serverRssKiB',
): Spread {
  const rally = samples.rally ?? []
  const other = samples[peer] ?? []
  const ratios: number[] = []
  for (const a of rally) {
    const b = other.find((sample) => sample.rep === a.rep)
    // A missing figure is NaN, which spread() leaves out.
    if (b !== undefined) ratios.push((a[key] ?? Number.NaN) / (b[key] ?? Number.NaN))
  }
  void scenario
  return spread(ratios)
}

function summarize(scenario: Scenario, samples: Record<string, Sample[]>): ServerSummary[] {
  return scenario.servers.map((id) => {
    const list = samples[id] ?? []
    const summary: ServerSummary = {
      id,
      label: SERVERS[id].label,
      headline: spread(list.map((s) => s.headline)),
      perCpu: spread(list.map((s) => s.perCpu)),
      perSecond: spread(list.map((s) => s.perSecond)),
      p50: spread(list.map((s) => s.p50)),
      p99: spread(list.map((s) => s.p99)),
      serverCpuUtil: spread(list.map((s) => s.serverCpuUtil)),
      loadgenCpuUtil: spread(list.map((s) => s.loadgenCpuUtil)),
    }
    if (scenario.kind !== 'memory') summary.rss = spread(list.map((s) => s.serverRssKiB ?? Number.NaN))
    if (id !== 'rally' && samples.rally !== undefined) {
      summary.ratio = pairRatios(scenario, samples, id, 'headline')
      if (scenario.kind !== 'memory') {
        summary.ratioPerSecond = pairRatios(scenario, samples, id, 'perSecond')
        summary.ratioRss = pairRatios(scenario, samples, id, 'serverRssKiB')
      }
    }
    return summary
  })
}

// ------------------------------------------------------------------ formatting

function si(value: number): string {
  if (!Number.isFinite(value)) return '–'
  const abs = Math.abs(value)
  if (abs >= 1e9) return `${(value / 1e9).toFixed(2)}G`
  if (abs >= 1e6) return `${(value / 1e6).toFixed(2)}M`
  if (abs >= 1e4) return `${(value / 1e3).toFixed(1)}k`
  if (abs >= 1e3) return `${(value / 1e3).toFixed(2)}k`
  if (abs >= 100) return value.toFixed(0)
  return value.toFixed(1)
}

function micros(value: number): string {
  if (!Number.isFinite(value)) return '–'
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} ms`
  if (value >= 1000) return `${(value / 1000).toFixed(2)} ms`
  return `${value.toFixed(value >= 100 ? 0 : 1)} µs`
}

function bytes(value: number): string {
  if (!Number.isFinite(value)) return '–'
  if (value >= 10 * 1024) return `${(value / 1024).toFixed(1)} KiB`
  return `${value.toFixed(0)} B`
}

function mebibytes(kib: number): string {
  return Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : '–'
}

function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : '–'
}

function spreadText(s: Spread, format: (v: number) => string): string {
  if (s.n === 0) return '–'
  if (s.n === 1) return format(s.median)
  return `${format(s.median)} [${format(s.min)}–${format(s.max)}]`
}

function headlineFormat(kind: Kind): (v: number) => string {
  return kind === 'latency' ? micros : kind === 'memory' ? bytes : si
}

function headlineName(scenario: Scenario): string {
  if (scenario.kind === 'latency') return 'p50 round trip'
  if (scenario.kind === 'memory') return 'bytes per connection'
  return `${scenario.units} per server CPU-s`
}

function lowerIsBetter(kind: Kind): boolean {
  return kind !== 'throughput'
}

/**
 * Whether a ratio meets its target (≥ for higher-is-better figures, ≤ otherwise). By direction
 * rather than by kind: server RSS is lower-is-better in a throughput scenario.
 */
function meets(lower: boolean, value: number, target: number): boolean {
  return lower ? value <= target : value >= target
}

function targetText(lower: boolean, target: number | undefined): string {
  if (target === undefined) return '—'
  return `${lower ? '≤' : '≥'} ${target}×`
}

function pad(text: string, width: number, right = false): string {
  const length = [...text].length
  if (length >= width) return text
  return right ? ' '.repeat(width - length) + text : text + ' '.repeat(width - length)
}

function terminalTable(results: ScenarioResult[]): string {
  const lines: string[] = []
  for (const { scenario, summary } of results) {
    lines.push('')
    lines.push(
      `${scenario.title}  (${headlineName(scenario)}${lowerIsBetter(scenario.kind) ? ', lower is better' : ''})`,
    )
    const format = headlineFormat(scenario.kind)
    const header =
      scenario.kind === 'memory'
        ? ['server', 'bytes/conn', 'Rally/this']
        : [
            'server',
            headlineName(scenario),
            `${scenario.unit}/s`,
            'p50',
            'p99',
            'srv CPU',
            'lg CPU',
            'srv RSS',
            'Rally/this',
            'Rally/this raw',
            'Rally/this RSS',
          ]
    const rows = summary.map((s) => {
      if (scenario.kind === 'memory')
        return [s.label, spreadText(s.headline, format), s.ratio ? spreadText(s.ratio, ratio) : '']
      return [
        s.label,
        spreadText(s.headline, format),
        si(s.perSecond.median),
        micros(s.p50.median),
        micros(s.p99.median),
        `${(s.serverCpuUtil.median * 100).toFixed(0)}%`,
        `${(s.loadgenCpuUtil.median * 100).toFixed(0)}%`,
        s.rss ? mebibytes(s.rss.median) : '–',
        s.ratio ? spreadText(s.ratio, ratio) : '',
        s.ratioPerSecond ? ratio(s.ratioPerSecond.median) : '',
        s.ratioRss ? ratio(s.ratioRss.median) : '',
      ]
    })
    const widths = header.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...r[i]!].length)))
    lines.push(`  ${header.map((h, i) => pad(h, widths[i]!)).join('  ')}`)
    for (const row of rows) lines.push(`  ${row.map((c, i) => pad(c, widths[i]!, i > 0)).join('  ')}`)
  }
  return lines.join('\n')
}

/** The peer a target "vs ws" is checked against: ws with bufferutil where it ran. */
function wsPeer(summary: ServerSummary[]): ServerSummary | undefined {
  return summary.find((s) => s.id === 'ws-native') ?? summary.find((s) => s.id === 'ws')
}

function targetsTable(results: ScenarioResult[]): string[] {
  const rows: string[] = [
    '| scenario | figure | Rally vs ws + bufferutil | target | Rally vs raw `net` | target |',
    '| --- | --- | --- | --- | --- | --- |',
  ]
  for (const { scenario, summary } of results) {
    const ws = wsPeer(summary)
    const raw = summary.find((s) => s.id === 'raw')
    const lower = lowerIsBetter(scenario.kind)
    const cell = (value: Spread | undefined, target: number | undefined, lowerWins: boolean): string => {
      if (value === undefined || value.n === 0) return '—'
      const mark = target === undefined ? '' : meets(lowerWins, value.median, target) ? ' ✅' : ' ❌'
      return `${spreadText(value, ratio)}${mark}`
    }
    rows.push(
      `| ${scenario.title} | ${headlineName(scenario)} | ${cell(ws?.ratio, scenario.targets?.vsWs, lower)} | ${targetText(lower, scenario.targets?.vsWs)} | ${cell(raw?.ratio, scenario.targets?.vsRaw, lower)} | ${targetText(lower, scenario.targets?.vsRaw)} |`,
    )
    // A memory target on a throughput scenario gets a row of its own, right under the scenario's,
    // so that the figure column names what is compared. Checked against ws only, like the issue.
    if (scenario.targets?.rssVsWs !== undefined) {
      rows.push(
        `| ${scenario.title} | server RSS, peak in the measured window | ${cell(ws?.ratioRss, scenario.targets.rssVsWs, true)} | ${targetText(true, scenario.targets.rssVsWs)} | — | — |`,
      )
    }
  }
  return rows
}

function detailTables(results: ScenarioResult[]): string[] {
  const out: string[] = []
  for (const { scenario, summary } of results) {
    const format = headlineFormat(scenario.kind)
    out.push(`### ${scenario.title}`, '')
    out.push(
      `${scenario.note}. Headline: ${headlineName(scenario)}${lowerIsBetter(scenario.kind) ? ' (lower is better)' : ''}.`,
      '',
    )
    if (scenario.kind === 'memory') {
      out.push(
        '| server | bytes per connection | Rally/this | RSS before → after (median run) |',
        '| --- | --- | --- | --- |',
      )
      for (const s of summary) {
        const samples = results.find((r) => r.scenario === scenario)!.samples[s.id] ?? []
        const mid = samples.slice().sort((a, b) => a.headline - b.headline)[samples.length >> 1]
        const rss =
          mid === undefined
            ? '–'
            : `${((mid.rssBeforeKiB ?? 0) / 1024).toFixed(1)} → ${((mid.rssAfterKiB ?? 0) / 1024).toFixed(1)} MiB`
        out.push(
          `| ${s.label} | ${spreadText(s.headline, format)} | ${s.ratio ? spreadText(s.ratio, ratio) : ''} | ${rss} |`,
        )
      }
    } else {
      out.push(
        `| server | ${headlineName(scenario)} | ${scenario.units}/s | p50 | p99 | server CPU | loadgen CPU | server RSS | Rally/this (${scenario.kind === 'latency' ? 'p50' : 'per CPU-s'}) | Rally/this (${scenario.units}/s) | Rally/this (RSS) |`,
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      )
      for (const s of summary) {
        out.push(
          `| ${s.label} | ${spreadText(s.headline, format)} | ${spreadText(s.perSecond, si)} | ${micros(s.p50.median)} | ${micros(s.p99.median)} | ${(s.serverCpuUtil.median * 100).toFixed(0)}% | ${(s.loadgenCpuUtil.median * 100).toFixed(0)}% | ${s.rss ? spreadText(s.rss, mebibytes) : '–'} | ${s.ratio ? spreadText(s.ratio, ratio) : ''} | ${s.ratioPerSecond ? spreadText(s.ratioPerSecond, ratio) : ''} | ${s.ratioRss ? spreadText(s.ratioRss, ratio) : ''} |`,
        )
      }
    }
    out.push('')
  }
  return out
}

// ------------------------------------------------------------------ chart

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

const PEER_COLORS: Record<string, string> = {
  ws: '#9aa5b1',
  'ws-native': '#52606d',
  'ws-prepared': '#7b8794',
  raw: '#d97706',
}

/**
 * Horizontal bars, one group per scenario, one bar per peer: how many times better Rally did —
 * Rally/peer for throughput, peer/Rally for latency and memory — so that right of 1× is Rally's
 * side everywhere. Whiskers: min–max of the pairwise ratios. Ticks: the targets, same orientation.
 */
function chartSvg(results: ScenarioResult[]): string {
  const width = 900
  const left = 330
  const right = 60
  const barHeight = 14
  const gap = 4
  const groupGap = 18
  const top = 56
  let maxValue = 1.5
  const groups = results.map(({ scenario, summary }) => {
    const invert = lowerIsBetter(scenario.kind)
    const bars = summary
      .filter((s) => s.ratio !== undefined && s.ratio.n > 0)
      .map((s) => {
        const r = s.ratio!
        const f = (v: number): number => (invert ? 1 / v : v)
        const lo = Math.min(f(r.min), f(r.max))
        const hi = Math.max(f(r.min), f(r.max))
        const target =
          s.id === 'raw'
            ? scenario.targets?.vsRaw
            : s.id === wsPeer(summary)?.id
              ? scenario.targets?.vsWs
              : undefined
        return {
          id: s.id,
          label: s.label,
          value: f(r.median),
          lo,
          hi,
          target: target === undefined ? undefined : f(target),
        }
      })
    for (const bar of bars) maxValue = Math.max(maxValue, bar.hi, bar.target ?? 0)
    return { scenario, bars }
  })
  // Log scale, bars drawn from 1×: ratios of 0.7× and 10× both stay readable.
  let minValue = 0.5
  for (const group of groups)
    for (const bar of group.bars) minValue = Math.min(minValue, bar.lo, bar.target ?? 1)
  minValue = 2 ** Math.floor(Math.log2(minValue))
  maxValue = 2 ** Math.ceil(Math.log2(maxValue * 1.05))
  const plotWidth = width - left - right
  const span = Math.log(maxValue) - Math.log(minValue)
  const x = (v: number): number =>
    left + ((Math.log(Math.min(Math.max(v, minValue), maxValue)) - Math.log(minValue)) / span) * plotWidth
  let height = top
  for (const group of groups) height += group.bars.length * (barHeight + gap) + groupGap
  height += 40
  const out: string[] = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12" role="img" aria-labelledby="chart-title">`,
    '<title id="chart-title">Rally compared with ws, ws with bufferutil and a raw node:net server, per scenario</title>',
  )
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  out.push(
    `<text x="20" y="20" font-size="14" font-weight="600">How many times better Rally did than each peer (median; whiskers: min–max of the pairwise ratios)</text>`,
  )
  out.push(
    `<text x="20" y="38" fill="#52606d">Throughput: Rally/peer per server CPU-second. Latency, memory: peer/Rally. Right of 1× favours Rally. Log scale. ◆ target.</text>`,
  )
  // Grid.
  const ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64].filter((v) => v >= minValue && v <= maxValue)
  for (const v of ticks) {
    const gx = x(v)
    const one = v === 1
    out.push(
      `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${height - 34}" stroke="${one ? '#1f2933' : '#e4e7eb'}" stroke-width="${one ? 1.5 : 1}"/>`,
    )
    out.push(`<text x="${gx}" y="${height - 20}" text-anchor="middle" fill="#52606d">${v}×</text>`)
  }
  let y = top
  for (const { scenario, bars } of groups) {
    const groupHeight = bars.length * (barHeight + gap)
    out.push(
      `<text x="${left - 160}" y="${y + groupHeight / 2 + 4}" text-anchor="end" font-weight="600">${escapeXml(shortTitle(scenario))}</text>`,
    )
    for (const bar of bars) {
      const color = PEER_COLORS[bar.id] ?? '#52606d'
      out.push(
        `<text x="${left - 8}" y="${y + barHeight - 3}" text-anchor="end" fill="#3e4c59">vs ${escapeXml(bar.label)}</text>`,
      )
      out.push(
        `<rect x="${Math.min(x(1), x(bar.value))}" y="${y}" width="${Math.max(1, Math.abs(x(bar.value) - x(1)))}" height="${barHeight}" fill="${color}" rx="2"/>`,
      )
      const wy = y + barHeight / 2
      out.push(
        `<line x1="${x(bar.lo)}" y1="${wy}" x2="${x(bar.hi)}" y2="${wy}" stroke="#1f2933" stroke-width="1"/>`,
      )
      out.push(`<line x1="${x(bar.lo)}" y1="${wy - 4}" x2="${x(bar.lo)}" y2="${wy + 4}" stroke="#1f2933"/>`)
      out.push(`<line x1="${x(bar.hi)}" y1="${wy - 4}" x2="${x(bar.hi)}" y2="${wy + 4}" stroke="#1f2933"/>`)
      if (bar.target !== undefined) {
        const tx = x(bar.target)
        out.push(
          `<path d="M${tx} ${wy - 6} L${tx + 5} ${wy} L${tx} ${wy + 6} L${tx - 5} ${wy} Z" fill="#2563eb" opacity="0.85"/>`,
        )
      }
      out.push(
        `<text x="${Math.min(Math.max(x(bar.hi), x(1)), width - right) + 6}" y="${y + barHeight - 3}" fill="#1f2933">${bar.value.toFixed(2)}×</text>`,
      )
      y += barHeight + gap
    }
    y += groupGap
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

function shortTitle(scenario: Scenario): string {
  const titles: Record<string, string> = {
    'echo-32': 'echo 32 B',
    'echo-16k': 'echo 16 KiB',
    'rtt-32': 'RTT p50, 1 conn',
    'deflate-1k': 'echo 1 KiB deflate',
    'deflate-1k-defaults': '1 KiB deflate, defaults',
    'broadcast-1k': 'broadcast → 1,000',
    'broadcast-10k': 'broadcast → 10,000',
    handshake: 'handshakes',
    'idle-10k': `idle memory, ${(scenario.connections ?? 0).toLocaleString('en-US')}`,
    'idle-max': `idle memory, ${(scenario.connections ?? 0).toLocaleString('en-US')}`,
  }
  return titles[scenario.id] ?? scenario.id
}

// ------------------------------------------------------------------ machine, report

interface Machine {
  cpus: number
  cpuModel: string
  memoryGiB: number
  node: string
  ws: string
  kernel: string
  openFiles: number
  pinned: boolean
  loadAverageBefore: string
}

function machineInfo(options: Options, openFiles: number): Machine {
  let model = cpus()[0]?.model ?? 'unknown'
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
    const match = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)
    if (match !== null) model = match[1]!.trim()
  } catch {
    // Not Linux.
  }
  let kernel = ''
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
  } catch {
    kernel = process.platform
  }
  let load = ''
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {
    load = '?'
  }
  const wsVersion = (
    JSON.parse(readFileSync(join(ROOT, 'node_modules', 'ws', 'package.json'), 'utf8')) as { version: string }
  ).version
  return {
    cpus: availableParallelism(),
    cpuModel: model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    ws: wsVersion,
    kernel,
    openFiles,
    pinned: options.pin,
    loadAverageBefore: load,
  }
}

function markdown(
  results: ScenarioResult[],
  machine: Machine,
  options: Options,
  startedAt: Date,
  seconds: number,
): string {
  const out: string[] = []
  out.push('# Benchmarks', '')
  out.push(
    `Generated by \`npm run bench${options.reps === 5 ? '' : ` -- --reps ${options.reps}`}\` (bench/run.ts; \`rally bench\` from a clone runs the same) on ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC in ${Math.round(seconds / 60)} minutes. Do not edit by hand: run it again. Raw results: \`bench/results/bench.json\` (not committed).`,
    '',
  )
  out.push(
    'Rally side by side with `ws` (plain, and with `bufferutil`), `ws` with a pre-framed broadcast buffer, and a raw `node:net` server that completes the handshake and then echoes bytes unmodified — the upper limit of one Node.js thread on this machine. Ratios are Rally/peer computed repetition by repetition in the same run; the headline figure is work per server CPU-second.',
    '',
  )
  out.push('## Summary against the targets of issue 7', '')
  out.push(...targetsTable(results), '')
  out.push('![Rally compared with each peer](benchmarks.svg)', '')
  out.push('## Results', '')
  out.push(
    `Median [min–max] of ${options.reps} interleaved repetitions (${options.memoryReps} for memory at 10,000 connections, 2 at the most connections). ${options.duration} s measured after ${options.warmup} s of warm-up per repetition. "server CPU" is the server's CPU time over wall time in the measured window (100% = one core); "loadgen CPU" the same for the load generator, which shows it had headroom. "server RSS" is the server's resident set at its peak in the measured window (see Method).`,
    '',
  )
  out.push(...detailTables(results))
  out.push('## Method', '')
  out.push(
    '- **Load generator**: `bench/loadgen/loadgen.c`, one thread, epoll, non-blocking sockets, built by the runner with the machine’s `cc -O2`. It does the HTTP upgrade itself and sends frames built once at start (masked, as clients must); it parses every frame it receives (headers split across reads, extended lengths; masked frames from the raw server are accepted). Latency comes from a log-linear histogram (error < 1.6%).',
    '- **Servers** (`bench/servers/`): each a child process on a free port of 127.0.0.1, started with `node --expose-gc --import tsx`, source-mapped stack traces off (tsx turns them on; mapping the stack of every socket error would cost each server several percent of a handshake). Rally runs with `heartbeat: false` (ws has no heartbeat) and `decodeText: false` (ws hands text over as a Buffer too), so neither decodes text in an echo. `ws` plain runs with `WS_NO_BUFFER_UTIL=1 WS_NO_UTF_8_VALIDATE=1`; “ws + bufferutil” without them (on Node ≥ 18.14 ws validates UTF-8 with `buffer.isUtf8` either way, so only masking changes). The raw server writes back what it reads: the client’s masked frames return as they are, and the load generator accepts them from this peer.',
    '- **Pinning**: with two or more cores the server runs on CPU 0 and the load generator on CPU 1 (`taskset`). The machine is shared with other work, so throughput moves with it; CPU time per unit of work moves much less, which is why it is the headline.',
    '- **CPU time**: the load generator reads the server’s utime+stime (all threads, zlib’s thread pool included) from `/proc/PID/stat` and its own from `getrusage` at the edges of the measured window.',
    '- **Server RSS** (throughput and latency scenarios): the peak of the server’s resident set over the measured window, which the load generator reads from `/proc/PID/statm` (the count `VmRSS` shows: heap, buffers, zlib’s memory, code) at both edges of the window and every 50 ms in between; the raw results keep the values at the edges too. The peak rather than the end, since memory held only under load (compression state, write backlogs) counts as much. A server is started once for all the scenarios with the same server arguments and repetitions follow one another, so the figure includes what its heap kept from the runs before; each deflate scenario has servers of its own. Rally/peer is taken pair by pair, like the other ratios.',
    '- **Echo**: every connection keeps a window of messages in flight; each echo is timed against its send time (a per-connection ring: echoes return in order) and replaced at once.',
    `- **permessage-deflate**: the client sends 1 KiB of JSON-like text compressed once at start (raw deflate, no context takeover, RSV1), so every message is the same bytes. “no context takeover”: the client offers \`${OFFER_FAIR}\`, Rally runs with \`perMessageDeflate: true\` (no context takeover, level 1, threshold 1024 by default) and ws with the same parameters (\`serverNoContextTakeover\`, \`clientNoContextTakeover\`, level 1, memLevel 8, threshold 1024). “defaults”: both servers with \`perMessageDeflate: true\` and the offer browsers send, \`${OFFER_BROWSER}\`; ws then keeps a compressor per connection (context takeover, zlib’s default level), Rally does not.`,
    '- **Broadcast**: subscribers connect on `/sub`, then one publisher on `/pub`. The publisher sends 64-byte messages that carry their send time (CLOCK_MONOTONIC); the server publishes each to every subscriber (Rally `server.publish(topic, data)`; ws `for (const client of wss.clients) client.send(data)`; ws pre-framed: `WebSocket.Sender.frame()` once, the same Buffer written to each `ws._socket`; raw: framed once, one write per subscriber of what arrived in one read). Closed loop: 8 broadcasts in flight, counted in deliveries, so the server is busy without buffering without bound. Latency: arrival time minus send time, the same clock on both sides.',
    '- **Handshakes**: 32 concurrent slots connect, send an upgrade request, check the 101 and its `Sec-WebSocket-Accept`, then reset the connection (SO_LINGER 0, so no TIME_WAIT) and start over. The reset costs every server an `ECONNRESET` error object, about a tenth of a handshake’s CPU. Client ports are chosen by the load generator in turn (the kernel’s search for a free port slows down with tens of thousands of connections to one address).',
    '- **Idle memory**: a fresh server; full GC (twice), VmRSS from `/proc/PID/status`; open N connections and wait until all are upgraded; wait 1 s, full GC, VmRSS again. (after − before) ÷ N. Kernel socket buffers are not in RSS and are the same for every server.',
    '- **Statistics**: servers are interleaved within each repetition, the order reversed every other repetition (A B C D, D C B A, …). Ratios Rally/peer are taken within a repetition, then summarized: median [min–max].',
    '',
  )
  out.push('## Machine', '')
  out.push(
    `- ${machine.cpus} CPUs: ${machine.cpuModel}; ${machine.memoryGiB} GiB; Linux ${machine.kernel}`,
    `- Node.js ${machine.node}; ws ${machine.ws}; open-file limit ${machine.openFiles}`,
    `- Pinned: ${machine.pinned ? 'server on CPU 0, load generator on CPU 1' : 'no'}; load average at the start: ${machine.loadAverageBefore}`,
    '',
  )
  if (existsSync(NOTES)) {
    out.push(readFileSync(NOTES, 'utf8').trim(), '')
  }
  return out.join('\n')
}

// ------------------------------------------------------------------ progress

class Progress {
  private done = 0
  private readonly started = Date.now()
  private readonly tty = process.stderr.isTTY === true

  constructor(private readonly total: number) {}

  step(text: string): void {
    const elapsed = (Date.now() - this.started) / 1000
    const eta = this.done > 0 ? (elapsed / this.done) * (this.total - this.done) : Number.NaN
    const bar = `[${String(this.done + 1).padStart(String(this.total).length)}/${this.total}]`
    const line = `${bar} ${text}  ${clock(elapsed)} elapsed${Number.isFinite(eta) ? `, ~${clock(eta)} left` : ''}`
    if (this.tty) process.stderr.write(`\r\x1b[2K${line}`)
    else process.stderr.write(`${line}\n`)
  }

  finishStep(): void {
    this.done++
  }

  end(): void {
    if (this.tty) process.stderr.write('\r\x1b[2K')
  }

  note(text: string): void {
    if (this.tty) process.stderr.write(`\r\x1b[2K${text}\n`)
    else process.stderr.write(`${text}\n`)
  }
}

function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

// ------------------------------------------------------------------ main

function buildLoadgen(): void {
  const fresh =
    existsSync(LOADGEN_BINARY) && statSync(LOADGEN_BINARY).mtimeMs >= statSync(LOADGEN_SOURCE).mtimeMs
  if (fresh) return
  mkdirSync(dirname(LOADGEN_BINARY), { recursive: true })
  const cc = process.env.CC ?? 'cc'
  execFileSync(cc, ['-O2', '-o', LOADGEN_BINARY, LOADGEN_SOURCE], { stdio: 'inherit' })
}

/** 1 KiB of JSON-like text and its raw-deflate form (no context takeover, 00 00 FF FF removed). */
function payloadFiles(): { text: string; deflated: string } {
  const items: unknown[] = []
  let text = ''
  for (let i = 0; ; i++) {
    items.push({ id: 1000 + i, name: `item-${i}`, price: 9.5 + i, tags: ['new', 'sale'], stock: i % 7 === 0 })
    const next = JSON.stringify({ type: 'update', seq: 123456, items })
    if (next.length > 960) break
    text = next
  }
  const body = text.slice(0, -1)
  const padding = 1024 - body.length - ',"pad":""}'.length
  text = `${body},"pad":"${'x'.repeat(padding)}"}`
  if (Buffer.byteLength(text) !== 1024) throw new Error(`payload is ${Buffer.byteLength(text)} bytes`)
  JSON.parse(text)
  const compressed = deflateRawSync(Buffer.from(text), { finishFlush: constants.Z_SYNC_FLUSH })
  const deflated = compressed.subarray(0, compressed.length - 4)
  const dir = join(RESULTS, 'tmp')
  mkdirSync(dir, { recursive: true })
  const textFile = join(dir, 'payload-1k.json')
  const deflatedFile = join(dir, 'payload-1k.deflate')
  writeFileSync(textFile, text)
  writeFileSync(deflatedFile, deflated)
  return { text: textFile, deflated: deflatedFile }
}

function openFileLimit(): number {
  try {
    const out = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()
    return out === 'unlimited' ? 1 << 20 : Number(out)
  } catch {
    return 1024
  }
}

/** `--render [FILE]`: writes the report again from saved results (after editing the notes). */
function render(file: string): void {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as {
    startedAt: string
    seconds: number
    machine: Machine
    options: Options
    results: ScenarioResult[]
  }
  process.stdout.write(`${terminalTable(saved.results)}\n`)
  mkdirSync(DOCS, { recursive: true })
  writeFileSync(join(DOCS, 'benchmarks.svg'), chartSvg(saved.results))
  writeFileSync(
    join(DOCS, 'benchmarks.md'),
    markdown(saved.results, saved.machine, saved.options, new Date(saved.startedAt), saved.seconds),
  )
  process.stdout.write(`\nReport from ${relative(ROOT, file)}: docs/benchmarks.md, docs/benchmarks.svg\n`)
}

async function main(): Promise<void> {
  // First, so that asking for help builds, starts and writes nothing (`rally bench --help` relies
  // on it to check the pass-through cheaply).
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`${HELP}\n`)
    return
  }
  const renderAt = process.argv.indexOf('--render')
  if (renderAt !== -1) {
    const file = process.argv[renderAt + 1]
    render(file !== undefined && !file.startsWith('--') ? file : join(RESULTS, 'bench.json'))
    return
  }
  const options = parseOptions(process.argv.slice(2))
  if (availableParallelism() < 2) options.pin = false
  if (options.pin) {
    try {
      execFileSync('taskset', ['-c', '0', 'true'])
    } catch {
      options.pin = false
    }
  }
  const startedAt = new Date()
  const argv = process.argv.slice(2)
  const partial = ['--only', '--servers', '--reps', '--duration', '--warmup'].some((flag) =>
    argv.includes(flag),
  )
  buildLoadgen()
  const files = payloadFiles()
  const limit = openFileLimit()
  // Room for the server's own descriptors (epoll, pipes, listening socket...).
  const list = scenarios(options, files, limit - 100)
  const machine = machineInfo(options, limit)

  let total = 0
  for (const scenario of list) {
    total += repsOf(scenario, options) * scenario.servers.length
  }
  const progress = new Progress(total)
  process.stderr.write(
    `Rally benchmarks${options.quick ? ' (quick)' : ''}: ${list.length} scenarios, ${total} runs; ${machine.cpus} CPUs (${machine.cpuModel}), Node ${machine.node}${options.pin ? ', server on CPU 0, loadgen on CPU 1' : ''}\n`,
  )

  const results: ScenarioResult[] = []
  // Servers are started once and reused by every scenario with the same server arguments (the
  // memory scenarios start a fresh one per measurement).
  const pool = new Map<string, RunningServer>()
  const serverFor = async (id: ServerId, scenario: Scenario): Promise<RunningServer> => {
    const key = serverKey(id, scenario)
    let server = pool.get(key)
    if (server === undefined || !server.alive()) {
      server = await startServer(id, scenario, options)
      pool.set(key, server)
    }
    return server
  }
  try {
    for (const [index, scenario] of list.entries()) {
      const samples: Record<string, Sample[]> = {}
      const reps = repsOf(scenario, options)
      if (scenario.kind !== 'memory') await Promise.all(scenario.servers.map((id) => serverFor(id, scenario)))
      for (let rep = 0; rep < reps; rep++) {
        const order = rep % 2 === 0 ? scenario.servers : scenario.servers.slice().reverse()
        for (const id of order) {
          const what = `${scenario.id} · ${SERVERS[id].label} · rep ${rep + 1}/${reps}`
          progress.step(what)
          try {
            const sample =
              scenario.kind === 'memory'
                ? await measureMemory(id, scenario, rep, options)
                : await measureThroughput(await serverFor(id, scenario), scenario, rep, options)
            for (const warning of sample.warnings) progress.note(`  ! ${what}: ${warning}`)
            ;(samples[id] ??= []).push(sample)
          } catch (error) {
            // One failed measurement costs its pair of ratios, not the run.
            progress.note(`  ! ${what}: ${error instanceof Error ? error.message : String(error)}`)
          }
          progress.finishStep()
        }
      }
      results.push({ scenario, samples, summary: summarize(scenario, samples) })
      // Stop the servers no later scenario uses.
      const later = new Set(
        list
          .slice(index + 1)
          .flatMap((next) => (next.kind === 'memory' ? [] : next.servers.map((id) => serverKey(id, next)))),
      )
      for (const [key, server] of pool) {
        if (!later.has(key)) {
          pool.delete(key)
          await server.stop()
        }
      }
    }
  } finally {
    await Promise.all([...pool.values()].map((server) => server.stop()))
  }
  progress.end()
  const seconds = (Date.now() - startedAt.getTime()) / 1000

  process.stdout.write(`${terminalTable(results)}\n\n`)
  process.stdout.write(`Against the targets of issue 7 (Rally/peer, median [min–max]):\n`)
  for (const row of targetsTable(results).slice(2)) process.stdout.write(`  ${row}\n`)

  mkdirSync(RESULTS, { recursive: true })
  const jsonFile = join(
    RESULTS,
    options.quick ? 'bench-quick.json' : partial ? 'bench-partial.json' : 'bench.json',
  )
  writeFileSync(
    jsonFile,
    `${JSON.stringify({ startedAt: startedAt.toISOString(), seconds, machine, options, results }, null, 2)}\n`,
  )
  process.stdout.write(`\nRaw results: ${relative(ROOT, jsonFile)}  (${clock(seconds)})\n`)
  if (options.docs === true || (options.docs === undefined && !options.quick && !partial)) {
    mkdirSync(DOCS, { recursive: true })
    writeFileSync(join(DOCS, 'benchmarks.svg'), chartSvg(results))
    writeFileSync(join(DOCS, 'benchmarks.md'), markdown(results, machine, options, startedAt, seconds))
    process.stdout.write('Report: docs/benchmarks.md, docs/benchmarks.svg\n')
  }
}

main().then(
  () => {
    killAll()
  },
  (error: unknown) => {
    process.stderr.write(
      `\nbench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    )
    killAll()
    process.exit(1)
  },
)
