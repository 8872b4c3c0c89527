/**
 * What the Node.js load generators (bench/loadgen/fanout.ts, bench/loadgen/h2.ts) share: their
 * command line, the measured window (warm-up, then the servers' CPU time and resident set read
 * from /proc at its edges, as the C load generator does), a log-linear latency histogram and the
 * JSON report, in the shape of the C load generator's (bench/processes.ts, LoadgenResult), so the
 * runner measures every server the same way whatever drives it.
 *
 * They are Node processes because what they speak — SSE and long polling over HTTP/1.1 keep-alive,
 * Engine.IO's polling, HTTP/2 streams, TLS — is what Node's own clients do well; the headline figure
 * is the server's work per CPU-second, which the client's speed changes little (its own CPU use is
 * reported beside it).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

process.setSourceMapsEnabled(false)

/** `--name value` pairs; flags listed in `booleans` take no value. */
export function parseArgv(argv: string[], booleans: readonly string[] = []): Map<string, string> {
  const args = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]!
    if (!name.startsWith('--')) fail(`unexpected argument ${name}`)
    if (booleans.includes(name.slice(2))) {
      args.set(name.slice(2), 'true')
      continue
    }
    const value = argv[i + 1]
    if (value === undefined) fail(`${name} needs a value`)
    args.set(name.slice(2), value)
    i++
  }
  return args
}

/** Runs a load generator's main; a failure is one line on stderr and exit code 1. */
export function run(main: () => Promise<void>): void {
  main().catch(failed)
}

export function failed(error: unknown): never {
  process.stderr.write(`loadgen: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
}

export function fail(message: string): never {
  process.stderr.write(`loadgen: ${message}\n`)
  process.exit(2)
}

export function numberArg(args: Map<string, string>, name: string, fallback: number): number {
  const text = args.get(name)
  if (text === undefined) return fallback
  const value = Number(text)
  if (!Number.isFinite(value) || value < 0) fail(`--${name} must be a number ≥ 0, not ${text}`)
  return value
}

export function listArg(args: Map<string, string>, name: string): number[] {
  const text = args.get(name)
  if (text === undefined || text === '') return []
  return text.split(',').map((part) => {
    const value = Number(part)
    if (!Number.isInteger(value) || value <= 0) fail(`--${name}: ${part} is not a positive integer`)
    return value
  })
}

let ticksPerSecond = 0
function clockTicks(): number {
  if (ticksPerSecond === 0) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** utime + stime of a process, all its threads, in seconds (fields 14 and 15 of /proc/PID/stat). */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may hold spaces and parentheses: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / clockTicks()
}

/** stime of a process in seconds: the part of its CPU time spent in the kernel (system calls). */
export function processSystemSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[12]) / clockTicks()
}

/**
 * Times the process's main thread gave up the CPU waiting (voluntary context switches in
 * /proc/PID/status): for an event loop, how often it went to sleep in epoll for lack of work.
 */
export function processWakeups(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)
  return match === null ? 0 : Number(match[1])
}

/** Resident set of a process in KiB (the second field of /proc/PID/statm, in pages). */
export function processRssKiB(pid: number): number {
  const pages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1])
  return pages * 4
}

function ownCpuSeconds(): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

/** Log-linear buckets of microseconds × 8: 32 sub-buckets per power of two (error < 1.6%). */
export class Histogram {
  private readonly buckets = new Float64Array(64 * 32)
  count = 0
  private sum = 0
  private max = 0

  record(micros: number): void {
    const v = Math.max(0, Math.round(micros * 8))
    this.buckets[Histogram.index(v)]!++
    this.count++
    this.sum += micros
    if (micros > this.max) this.max = micros
  }

  private static index(v: number): number {
    if (v < 32) return v
    const e = 31 - Math.clz32(v)
    return (e - 4) * 32 + ((v >>> (e - 5)) & 31)
  }

  private static middle(index: number): number {
    if (index < 32) return index
    const e = Math.floor(index / 32) + 4
    const m = index % 32
    const width = 2 ** (e - 5)
    return (32 + m) * width + width / 2
  }

  percentile(p: number): number {
    if (this.count === 0) return 0
    const rank = Math.ceil((p / 100) * this.count)
    let seen = 0
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i]!
      if (seen >= rank) return Histogram.middle(i) / 8
    }
    return this.max
  }

  summary(): { p50: number; p90: number; p99: number; p999: number; max: number; mean: number } {
    return {
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      max: this.max,
      mean: this.count > 0 ? this.sum / this.count : 0,
    }
  }
}

/** Counters the driver bumps; the window reads them at its edges. */
export interface Counters {
  /** Units of work done (deliveries, messages, handshakes). */
  count: number
  rxBytes: number
  errors: number
  /** Latency samples, µs; only those inside the measured window count. */
  latency: Histogram
}

export interface WindowOptions {
  warmup: number
  duration: number
  serverPids: number[]
}

/**
 * Runs the measured window over a load that is already running: `warmup` seconds, then
 * `duration` seconds during which the servers' CPU time and RSS (summed over `serverPids`) are
 * read at the edges, RSS every 50 ms in between. Resolves with the report fields.
 */
export async function measureWindow(
  counters: Counters,
  options: WindowOptions,
): Promise<Record<string, number>> {
  await new Promise((resolve) => setTimeout(resolve, options.warmup * 1000))
  const cpuOf = () => options.serverPids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0)
  const rssOf = () => options.serverPids.reduce((sum, pid) => sum + processRssKiB(pid), 0)
  counters.latency = new Histogram()
  const count0 = counters.count
  const rx0 = counters.rxBytes
  const errors0 = counters.errors
  const serverCpu0 = options.serverPids.length > 0 ? cpuOf() : 0
  const systemOf = () => options.serverPids.reduce((sum, pid) => sum + processSystemSeconds(pid), 0)
  const wakeupsOf = () => options.serverPids.reduce((sum, pid) => sum + processWakeups(pid), 0)
  const serverSystem0 = options.serverPids.length > 0 ? systemOf() : 0
  const serverWakeups0 = options.serverPids.length > 0 ? wakeupsOf() : 0
  const rssStart = options.serverPids.length > 0 ? rssOf() : -1
  let rssPeak = rssStart
  let rssSamples = rssStart >= 0 ? 1 : 0
  const own0 = ownCpuSeconds()
  const t0 = performance.now()
  const sampler =
    options.serverPids.length > 0
      ? setInterval(() => {
          rssPeak = Math.max(rssPeak, rssOf())
          rssSamples++
        }, 50)
      : undefined
  await new Promise((resolve) => setTimeout(resolve, options.duration * 1000))
  if (sampler !== undefined) clearInterval(sampler)
  const wall = (performance.now() - t0) / 1000
  const count = counters.count - count0
  const serverCpu = options.serverPids.length > 0 ? cpuOf() - serverCpu0 : 0
  const serverSystem = options.serverPids.length > 0 ? systemOf() - serverSystem0 : 0
  const serverWakeups = options.serverPids.length > 0 ? wakeupsOf() - serverWakeups0 : 0
  const rssEnd = options.serverPids.length > 0 ? rssOf() : -1
  rssPeak = Math.max(rssPeak, rssEnd)
  const own = ownCpuSeconds() - own0
  return {
    wall_s: wall,
    count,
    per_s: count / wall,
    rx_bytes: counters.rxBytes - rx0,
    rx_bytes_per_s: (counters.rxBytes - rx0) / wall,
    latency_samples: counters.latency.count,
    server_cpu_s: serverCpu,
    server_system_s: serverSystem,
    server_wakeups: serverWakeups,
    loadgen_cpu_s: own,
    loadgen_cpu_util: own / wall,
    server_rss_start_kib: rssStart,
    server_rss_end_kib: rssEnd,
    server_rss_peak_kib: rssPeak,
    server_rss_samples: rssSamples + 1,
    errors: counters.errors - errors0,
  }
}

/** Prints the report (one JSON line, as the C load generator) and exits. */
export function report(fields: Record<string, unknown>, counters: Counters): void {
  const full = {
    server_closes: 0,
    handshake_failures: 0,
    failed_at_open: 0,
    stalls: 0,
    lost: 0,
    payload_bytes: 0,
    frame_bytes: 0,
    ...fields,
    latency_us: counters.latency.summary(),
  }
  // Sockets still open keep the loop alive: the write's callback ends the process.
  process.stdout.write(`${JSON.stringify(full)}\n`, () => process.exit(0))
}

/** Rejects after `ms` with a message naming what did not happen: a bound on a wait, not a timer. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const bound = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
  })
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer))
}
