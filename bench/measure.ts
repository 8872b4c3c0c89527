/**
 * One measured window: a throughput or latency sample from the load generator (which reads the
 * server's CPU time from /proc/PID/stat and samples its RSS from /proc/PID/statm over the window),
 * or an idle-memory sample (the server's VmRSS before and after opening N connections, each after
 * a full GC).
 */
import { readFileSync } from 'node:fs'
import type { Options } from './cli-options.js'
import {
  type LoadgenResult,
  type RunningServer,
  sleep,
  startLoadgen,
  startNodeLoadgen,
  startServer,
} from './processes.js'
import type { Scenario, ServerId } from './scenarios.js'

function readRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status)
  if (match === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1])
}

export interface Sample {
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
  /** The load generator's report (absent for the recovery measurement, which is in-process). */
  raw?: LoadgenResult
  /** realtime-recovery: what the recovering subscribe took. */
  recovery?: RecoveryFigures
}

export interface RecoveryFigures {
  /** Publications the client missed and the reply carried. */
  missed: number
  publications: number
  recovered: boolean
  /** WebSocket messages from sending the subscribe to its reply, the reply included. */
  frames: number
  replyBytes: number
}

export function warningsOf(result: LoadgenResult, scenario: Scenario): string[] {
  const warnings: string[] = []
  if (result.mode !== 'handshake' && result.opened < result.conns)
    warnings.push(`${result.conns - result.opened} of ${result.conns} connections failed to open`)
  if (result.mode !== 'handshake' && result.mode !== 'idle' && result.open_at_end < result.opened)
    warnings.push(`${result.opened - result.open_at_end} connections closed during the run`)
  if (result.errors > 0) warnings.push(`${result.errors} socket errors`)
  if (result.mode === 'handshake' && result.handshake_failures > 0)
    warnings.push(`${result.handshake_failures} failed handshakes`)
  // A server can accept permessage-deflate and still send every message uncompressed (Bun does,
  // unless each send asks to compress): that would measure something else.
  if (scenario.serverArgs.includes('--deflate') && result.mode === 'echo' && result.compressed_frames === 0)
    warnings.push('the server sent no compressed frame although permessage-deflate was negotiated')
  if (result.stalls > 0) warnings.push(`${result.stalls} stalls (${result.lost} deliveries lost)`)
  if (scenario.kind !== 'memory' && result.count === 0) warnings.push('nothing was measured')
  if (scenario.kind !== 'memory' && result.server_cpu_s <= 0) warnings.push('no server CPU time measured')
  if (scenario.kind !== 'memory' && !(result.server_rss_peak_kib > 0)) warnings.push('no server RSS measured')
  return warnings
}

export async function measureThroughput(
  server: RunningServer,
  scenario: Scenario,
  rep: number,
  options: Options,
): Promise<Sample> {
  const duration = Math.max(options.duration, scenario.minDuration ?? 0)
  const timing = ['--warmup', String(options.warmup), '--duration', String(duration)]
  const node = scenario.nodeLoadgen?.[server.id]
  // A cluster's subscribers are spread over its nodes, and its CPU time is the sum of theirs.
  const where = ['--ports', server.ports.join(','), '--server-pids', server.pids.join(',')]
  const run =
    node !== undefined
      ? startNodeLoadgen(
          node[0]!,
          [...node.slice(1), ...where, ...timing],
          // Opening a thousand HTTP sessions from Node takes longer than the C load generator.
          (options.warmup + duration) * 1000 + 180_000,
          options,
        )
      : startLoadgen(
          [...scenario.loadgen, ...(scenario.loadgenFor?.[server.id] ?? []), ...where, ...timing],
          (options.warmup + duration) * 1000 + 90_000,
          options,
        )
  const raw = await run.result
  const cpu = raw.server_cpu_s
  const perCpu = cpu > 0 ? raw.count / cpu : Number.NaN
  return {
    rep,
    headline: scenario.kind === 'latency' ? raw.latency_us.p50 : perCpu,
    perCpu,
    perSecond: raw.per_s,
    // No samples (text publications carry no readable send time): no figure, rather than 0 µs.
    p50: raw.latency_samples > 0 ? raw.latency_us.p50 : Number.NaN,
    p99: raw.latency_samples > 0 ? raw.latency_us.p99 : Number.NaN,
    serverCpuUtil: cpu / raw.wall_s,
    loadgenCpuUtil: raw.loadgen_cpu_util,
    serverRssKiB: raw.server_rss_peak_kib > 0 ? raw.server_rss_peak_kib : Number.NaN,
    warnings: warningsOf(raw, scenario),
    raw,
  }
}

export async function measureMemory(
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
        ...(scenario.loadgenFor?.[id] ?? []),
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
