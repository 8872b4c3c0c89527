/**
 * Rally's server benchmarks, side by side with `ws` 8 (plain and with bufferutil), `ws` with a
 * pre-framed broadcast buffer, a raw `node:net` server (the limit of one Node.js thread) and Bun's
 * built-in server (native code, where Bun runs); and Rally's real-time layer (issue 12) next to
 * Rally's raw topics and Socket.IO 4.
 *
 * Modules: cli-options (arguments), scenarios (servers and scenarios), processes (servers and the
 * load generator as child processes), measure (one measured window), recovery (the real-time
 * recovery round trip), stats (median, pairwise ratios), report (tables, markdown, chart).
 *
 *   npm run bench                  full run (every scenario; the help text says how long), writes
 *                                  docs/benchmarks.md + .svg
 *   npm run bench -- --quick       short run (3–4 minutes), for development; no docs unless --docs
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

import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { constants, deflateRawSync } from 'node:zlib'
import { REDIS_SERVER } from '../test/support/brokers.js'
import { HELP, type Options, parseOptions, UsageError } from './cli-options.js'
import { measureMemory, measureThroughput, type Sample } from './measure.js'
import { DOCS, LOADGEN_BINARY, LOADGEN_SOURCE, RESULTS, ROOT } from './paths.js'
import { killAll, probeBun, type RunningServer, serverKey, startServer } from './processes.js'
import { measureRecovery } from './recovery.js'
import {
  chartSvg,
  laterIssuesTable,
  type Machine,
  machineInfo,
  markdown,
  minutesText,
  realtimeTable,
  takeoverMemoryTable,
  targetsTable,
  terminalTable,
} from './report.js'
import {
  estimateSeconds,
  type PayloadFiles,
  repsOf,
  type Scenario,
  SERVERS,
  type ServerId,
  scenarios,
  TAKEOVER_WINDOWS,
} from './scenarios.js'
import { type ScenarioResult, summarize } from './stats.js'

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

/**
 * 1 KiB of JSON-like text and its raw-deflate forms (compressed on its own, ended by a sync flush
 * whose 00 00 FF FF is removed, RFC 7692 7.2.1): with zlib's default 32 KiB window, and with each
 * smaller window deflate-memory offers (a client that offered client_max_window_bits=N must not
 * refer further back than 2^N bytes, and a 1 KiB message could).
 */
function payloadFiles(): PayloadFiles {
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
  const deflate = (windowBits: number): Buffer => {
    const compressed = deflateRawSync(Buffer.from(text), { finishFlush: constants.Z_SYNC_FLUSH, windowBits })
    return compressed.subarray(0, compressed.length - 4)
  }
  const dir = join(RESULTS, 'tmp')
  mkdirSync(dir, { recursive: true })
  const textFile = join(dir, 'payload-1k.json')
  const deflatedFile = join(dir, 'payload-1k.deflate')
  writeFileSync(textFile, text)
  writeFileSync(deflatedFile, deflate(15))
  const deflatedWithWindow: Record<number, string> = {}
  for (const bits of TAKEOVER_WINDOWS) {
    const file = join(dir, `payload-1k-w${bits}.deflate`)
    writeFileSync(file, deflate(bits))
    deflatedWithWindow[bits] = file
  }
  return { text: textFile, deflated: deflatedFile, deflatedWithWindow }
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
  let list = scenarios(options, files, limit - 100)
  // Bun is a reference, not a requirement: where its binary cannot run, say so and go on without.
  const bun = list.some((scenario) => scenario.servers.includes('bun')) ? probeBun() : undefined
  if (bun !== undefined && 'reason' in bun) {
    process.stderr.write(`Bun cannot run here (${bun.reason}): the benchmark runs without it.\n`)
    list = list.map((scenario) => ({ ...scenario, servers: scenario.servers.filter((id) => id !== 'bun') }))
  }
  // The cluster scenarios need Debian's redis-server, which the test set-up installs; where it
  // cannot be installed, say so and go on without them.
  if (list.some((scenario) => scenario.servers.some((id) => SERVERS[id].nodes !== undefined))) {
    if (!existsSync(REDIS_SERVER)) {
      const setup = pathToFileURL(join(ROOT, 'scripts', 'ensure-system-deps.mjs')).href
      const { ensureBrokers } = (await import(setup)) as { ensureBrokers(): void }
      ensureBrokers()
    }
    if (!existsSync(REDIS_SERVER)) {
      process.stderr.write(`${REDIS_SERVER} is missing: the benchmark runs without the cluster scenarios.\n`)
      list = list
        .map((scenario) => ({
          ...scenario,
          servers: scenario.servers.filter((id) => SERVERS[id].nodes === undefined),
        }))
        .filter((scenario) => scenario.servers.length > 0)
    }
  }
  const machine = machineInfo(
    options,
    limit,
    bun === undefined ? 'not run' : 'version' in bun ? bun.version : `not available (${bun.reason})`,
  )

  let total = 0
  for (const scenario of list) {
    total += repsOf(scenario, options) * scenario.servers.length
  }
  const progress = new Progress(total)
  process.stderr.write(
    `Rally benchmarks${options.quick ? ' (quick)' : ''}: ${list.length} scenarios, ${total} runs, about ${minutesText(estimateSeconds(list, options))}; ${machine.cpus} CPUs (${machine.cpuModel}), Node ${machine.node}${options.pin ? ', server on CPU 0, loadgen on CPU 1' : ''}\n`,
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
                : scenario.kind === 'recovery'
                  ? await measureRecovery(await serverFor(id, scenario), rep)
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
  const targetRows = targetsTable(results).slice(2)
  if (targetRows.length > 0) {
    process.stdout.write(`Against the targets of issues 7 and 17 (Rally/peer, median [min–max]):\n`)
    for (const row of targetRows) process.stdout.write(`  ${row}\n`)
  }
  const realtimeRows = realtimeTable(results).slice(2)
  if (realtimeRows.length > 0) {
    process.stdout.write(`\nThe real-time layer against the targets of issue 12:\n`)
    for (const row of realtimeRows) process.stdout.write(`  ${row}\n`)
  }
  const memoryRows = takeoverMemoryTable(results).slice(2)
  if (memoryRows.length > 0) {
    process.stdout.write(`\nMemory per connection with context takeover (issue 17, no target):\n`)
    for (const row of memoryRows) process.stdout.write(`  ${row}\n`)
  }
  const laterRows = laterIssuesTable(results).slice(2)
  if (laterRows.length > 0) {
    process.stdout.write(`\nTransports, cluster and HTTP/2 against the targets of issues 13, 14 and 16:\n`)
    for (const row of laterRows) process.stdout.write(`  ${row}\n`)
  }

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
    if (error instanceof UsageError) {
      // A bad command line: one line saying which argument and why, nothing built or started.
      process.stderr.write(`bench: ${error.message}\n`)
      killAll()
      process.exit(2)
    }
    process.stderr.write(
      `\nbench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    )
    killAll()
    process.exit(1)
  },
)
