/**
 * A small coverage-guided fuzzer, on V8's own block coverage.
 *
 * Why not Jazzer.js: `@jazzer.js/core` 4 is installed, but its native libFuzzer addon is shipped
 * only prebuilt, and the Linux x64 build needs glibc 2.38 (`__isoc23_strtol`); Debian 12 has
 * 2.36, so the addon does not load, and rebuilding it needs clang and libFuzzer, which we do not
 * have. This engine does what we need from it with Node alone: V8's precise block coverage
 * (`Profiler.takePreciseCoverage` over an in-process inspector session, taken after every input:
 * up to about 2,500 inputs a second on a trivial target) tells which inputs reach new blocks, or
 * reach a block a new number of times (libFuzzer's hit-count buckets); those inputs join
 * the corpus and are mutated further. The targets keep Jazzer's shape (one function taking the
 * input bytes), so they can move to it when the addon loads.
 *
 * Run as a program: node --import tsx test/fuzz/engine.ts --target frames --time 15
 * (or `npm run fuzz -- --target frames --time 600`). Exit code 0: no failure; 1: a target threw,
 * hung or grew memory past the limit; the input is printed (hex and base64) and saved.
 */
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'

export interface FuzzTarget {
  name: string
  /** Inputs are cut to this many bytes: the targets do work quadratic in the length. */
  maxLength: number
  /** Byte strings the mutator splices in (header names, magic lengths...). */
  dictionary?: readonly Uint8Array[]
  /** Path fragments of the modules whose coverage guides the search. */
  coverage: readonly string[]
  /** Throws (or rejects) when an invariant breaks; returns normally otherwise. */
  run(data: Uint8Array): void | Promise<void>
}

export const TARGET_NAMES = ['frames', 'http-head', 'extensions', 'close'] as const

/**
 * A target by name (test/fuzz/targets/<name>.ts), or any module exporting `target` by path (the
 * engine's own tests plant bugs in one).
 */
export async function loadTarget(nameOrPath: string): Promise<FuzzTarget> {
  if (nameOrPath.endsWith('.ts') || nameOrPath.endsWith('.js')) {
    const module = (await import(pathToFileURL(resolve(nameOrPath)).href)) as { target: FuzzTarget }
    return module.target
  }
  if (!(TARGET_NAMES as readonly string[]).includes(nameOrPath)) {
    throw new RangeError(`Unknown fuzz target ${nameOrPath}; targets: ${TARGET_NAMES.join(', ')}`)
  }
  const module = (await import(`./targets/${nameOrPath}.js`)) as { target: FuzzTarget }
  return module.target
}

export const CORPUS_ROOT = fileURLToPath(new URL('./corpus/', import.meta.url))

/** The seed inputs of a target, sorted by file name (test/fuzz/corpus/<target>/*); none if absent. */
export function readCorpus(name: string): { file: string; data: Uint8Array }[] {
  const dir = join(CORPUS_ROOT, name)
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .sort()
    .map((file) => ({ file, data: new Uint8Array(readFileSync(join(dir, file))) }))
}

// ------------------------------------------------------------------ randomness

/** mulberry32: small, fast, well spread, and reproducible from the seed printed at start. */
export class Random {
  private state: number
  constructor(seed: number) {
    this.state = seed | 0
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  below(n: number): number {
    return n <= 1 ? 0 : this.next() % n
  }
}

// ------------------------------------------------------------------ mutation

/** Values at the edges of the protocol's fields: 7-bit lengths, opcodes, bit masks. */
const INTERESTING_BYTES = [0, 1, 0x0f, 0x10, 0x40, 0x7d, 0x7e, 0x7f, 0x80, 0x81, 0x88, 0xc1, 0xfe, 0xff]
const INTERESTING_16 = [0, 1, 125, 126, 127, 128, 255, 256, 1000, 1005, 1006, 1015, 3000, 4999, 5000, 0xffff]

function splice(data: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length - remove + insert.length)
  out.set(data.subarray(0, at), 0)
  out.set(insert, at)
  out.set(data.subarray(at + remove), at + insert.length)
  return out
}

function mutateOnce(data: Uint8Array, random: Random, corpus: Uint8Array[], target: FuzzTarget): Uint8Array {
  const n = data.length
  const at = random.below(n)
  const dictionary = target.dictionary ?? []
  switch (random.below(15)) {
    case 0: {
      if (n === 0) break
      const out = data.slice()
      out[at]! ^= 1 << random.below(8)
      return out
    }
    case 1: {
      if (n === 0) break
      const out = data.slice()
      out[at] = random.below(256)
      return out
    }
    case 2: {
      if (n === 0) break
      const out = data.slice()
      out[at] = INTERESTING_BYTES[random.below(INTERESTING_BYTES.length)]!
      return out
    }
    case 3: {
      if (n === 0) break
      const out = data.slice()
      out[at] = (out[at]! + random.below(33) - 16) & 0xff
      return out
    }
    case 4: {
      if (n < 2) break
      const out = data.slice()
      const value = INTERESTING_16[random.below(INTERESTING_16.length)]!
      const position = random.below(n - 1)
      out[position] = value >>> 8
      out[position + 1] = value & 0xff
      return out
    }
    case 5: {
      const insert = new Uint8Array(1 + random.below(8))
      for (let i = 0; i < insert.length; i++) insert[i] = random.below(256)
      return splice(data, random.below(n + 1), 0, insert)
    }
    case 6: {
      if (n === 0) break
      return splice(data, at, Math.min(n - at, 1 + random.below(16)), new Uint8Array(0))
    }
    case 7: {
      // Repeat a slice: frames and header lines come in runs.
      if (n === 0) break
      const length = Math.min(n - at, 1 + random.below(64))
      return splice(data, random.below(n + 1), 0, data.slice(at, at + length))
    }
    case 8: {
      // Crossover: a slice of another corpus entry.
      const other = corpus[random.below(corpus.length)]!
      if (other.length === 0) break
      const from = random.below(other.length)
      const piece = other.subarray(from, from + 1 + random.below(other.length - from))
      const position = random.below(n + 1)
      return splice(data, position, random.below(Math.min(n - position, piece.length) + 1), piece)
    }
    case 9:
    case 10: {
      if (dictionary.length === 0) break
      const word = dictionary[random.below(dictionary.length)]!
      const position = random.below(n + 1)
      const overwrite = random.below(2) === 0 ? Math.min(n - position, word.length) : 0
      return splice(data, position, overwrite, word)
    }
    case 11: {
      if (n === 0) break
      return data.slice(0, at)
    }
    case 12: {
      // One more byte at the end: parsers read forward, so the frontier is often there.
      const out = new Uint8Array(n + 1)
      out.set(data)
      out[n] = random.below(256)
      return out
    }
    // Otherwise (13, 14, and the cases that do not apply): one byte anywhere takes any value.
  }
  const out = data.slice()
  if (n > 0) out[at] = random.below(256)
  return out
}

export function mutate(
  data: Uint8Array,
  random: Random,
  corpus: Uint8Array[],
  target: FuzzTarget,
): Uint8Array {
  let out = data
  // Mostly one change at a time, so that a step forward is not undone by the next change.
  const rounds = random.below(2) === 0 ? 1 : 2 + random.below(3)
  for (let i = 0; i < rounds; i++) out = mutateOnce(out, random, corpus, target)
  return out.length > target.maxLength ? out.subarray(0, target.maxLength) : out
}

// ------------------------------------------------------------------ coverage

interface CoverageRange {
  startOffset: number
  endOffset: number
  count: number
}
interface ScriptCoverage {
  url: string
  functions: { ranges: CoverageRange[] }[]
}

/** libFuzzer's hit-count buckets: reaching a block 1, 2, 3, 4-7, 8-15... times are different. */
function bucket(count: number): number {
  if (count <= 3) return 1 << (count - 1)
  if (count <= 7) return 8
  if (count <= 15) return 16
  if (count <= 31) return 32
  if (count <= 127) return 64
  return 128
}

interface Block {
  start: number
  end: number
  /** The buckets this block has been reached in. */
  seen: number
}

/**
 * V8 reports a function's blocks compactly: a nested range only where its count differs from the
 * range around it (a block that ran as often as its function is folded into it; one that never
 * ran shows up with count 0). So the count of a block is that of the innermost reported range
 * holding it, and every block ever reported for a function is remembered and read back that way.
 */
export class Coverage {
  private readonly session = new Session()
  /** Blocks by function (url and start offset), as far as reports have shown them. */
  private readonly functions = new Map<string, { blocks: Block[]; keys: Set<string> }>()
  /** How many (block, bucket) pairs have been reached in all. */
  features = 0

  /**
   * `paths`: which scripts count. `bucketed` false: only whether a block ran counts, not how often
   * (for merging, where the corpus should stay small).
   */
  constructor(
    private readonly paths: readonly string[],
    private readonly bucketed = true,
  ) {
    this.session.connect()
    // Posts on an in-process session answer synchronously.
    this.session.post('Profiler.enable')
    this.session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true })
  }

  /** Counts since the last call (taking resets them); true when something new was reached. */
  collect(): boolean {
    let scripts: ScriptCoverage[] = []
    this.session.post('Profiler.takePreciseCoverage', (error, answer) => {
      if (error === null) scripts = answer.result as ScriptCoverage[]
    })
    let fresh = false
    for (const script of scripts) {
      if (!this.paths.some((path) => script.url.includes(path))) continue
      for (const fn of script.functions) {
        const ranges = fn.ranges
        if (ranges.length === 0 || ranges[0]!.count === 0) continue
        const id = `${script.url}:${ranges[0]!.startOffset}`
        let known = this.functions.get(id)
        if (known === undefined) this.functions.set(id, (known = { blocks: [], keys: new Set() }))
        for (const range of ranges) {
          const key = `${range.startOffset}:${range.endOffset}`
          if (known.keys.has(key)) continue
          known.keys.add(key)
          known.blocks.push({ start: range.startOffset, end: range.endOffset, seen: 0 })
        }
        for (const block of known.blocks) {
          let count = 0
          let innermost = Number.POSITIVE_INFINITY
          for (const range of ranges) {
            const size = range.endOffset - range.startOffset
            if (range.startOffset <= block.start && block.end <= range.endOffset && size < innermost) {
              innermost = size
              count = range.count
            }
          }
          if (count === 0) continue
          const seen = block.seen | (this.bucketed ? bucket(count) : 1)
          if (seen !== block.seen) {
            block.seen = seen
            this.features++
            fresh = true
          }
        }
      }
    }
    return fresh
  }
}

// ------------------------------------------------------------------ hang watchdog

/**
 * A worker thread holds a copy of the input being run and the time it started. A synchronous
 * endless loop on the main thread cannot be interrupted from inside it; the worker sees the time
 * pass, prints the input and kills the process. (It also keeps the event loop alive, so a target
 * whose promise never settles is caught the same way instead of exiting quietly.)
 */
const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads')
const { mkdirSync, writeFileSync, writeSync } = require('node:fs')
const { createHash } = require('node:crypto')
const { join } = require('node:path')
const state = new Int32Array(workerData.shared, 0, 2)
const started = new Float64Array(workerData.shared, 8, 1)
const bytes = new Uint8Array(workerData.shared, 16)
setInterval(() => {
  if (Atomics.load(state, 0) !== 1) return
  if (Date.now() - started[0] < workerData.timeoutMs) return
  const input = Buffer.from(bytes.subarray(0, Atomics.load(state, 1)))
  const name = workerData.name + '-hang-' + createHash('sha1').update(input).digest('hex').slice(0, 16) + '.bin'
  const file = join(workerData.artifacts, name)
  mkdirSync(workerData.artifacts, { recursive: true })
  writeFileSync(file, input)
  writeSync(2, '\\nFUZZ FAILURE (' + workerData.name + '): no answer after ' + workerData.timeoutMs +
    ' ms (a hang)\\ninput (' + input.length + ' bytes, hex): ' + input.toString('hex') +
    '\\ninput (base64): ' + input.toString('base64') + '\\nsaved to ' + file +
    '; replay: npm run fuzz -- --target ' + workerData.target + ' --input ' + file + '\\n')
  process.kill(process.pid, 'SIGKILL')
}, Math.min(250, workerData.timeoutMs))
`

class Watchdog {
  private readonly state: Int32Array
  private readonly started: Float64Array
  private readonly bytes: Uint8Array
  private readonly worker: Worker

  constructor(target: string, name: string, maxLength: number, timeoutMs: number, artifacts: string) {
    const shared = new SharedArrayBuffer(16 + maxLength)
    this.state = new Int32Array(shared, 0, 2)
    this.started = new Float64Array(shared, 8, 1)
    this.bytes = new Uint8Array(shared, 16)
    this.worker = new Worker(WATCHDOG_SOURCE, {
      eval: true,
      workerData: { shared, timeoutMs, target, name, artifacts },
    })
  }

  begin(input: Uint8Array): void {
    this.bytes.set(input.subarray(0, this.bytes.length))
    Atomics.store(this.state, 1, Math.min(input.length, this.bytes.length))
    this.started[0] = Date.now()
    Atomics.store(this.state, 0, 1)
  }

  end(): void {
    Atomics.store(this.state, 0, 0)
  }

  stop(): Promise<number> {
    return this.worker.terminate()
  }
}

// ------------------------------------------------------------------ the loop

export interface FuzzOptions {
  target: string
  /**
   * Seconds for the whole run, the seed corpus's replay included (as libFuzzer's
   * -max_total_time): a growing corpus does not make CI slower.
   */
  seconds: number
  seed: number
  /** Per-input limit before it counts as a hang. */
  timeoutMs: number
  /** Resident memory past which the run fails. */
  rssLimitMb: number
  /** Where a failing input is written. */
  artifacts: string
  /** Where inputs that reached new coverage are written (for a longer run to keep). */
  corpusOut: string | undefined
  log: (line: string) => void
}

export interface FuzzStats {
  target: string
  seed: number
  runs: number
  runsPerSecond: number
  corpus: number
  /** (block, hit-count bucket) pairs reached. */
  features: number
  failure: string | undefined
}

function describeFailure(
  target: string,
  spec: string,
  error: unknown,
  input: Uint8Array,
  file: string,
): string {
  const buffer = Buffer.from(input)
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error)
  return (
    `FUZZ FAILURE (${target}): ${detail}\n` +
    `input (${input.length} bytes, hex): ${buffer.toString('hex')}\n` +
    `input (base64): ${buffer.toString('base64')}\n` +
    `saved to ${file}; replay: npm run fuzz -- --target ${spec} --input ${file}`
  )
}

export async function fuzz(options: FuzzOptions): Promise<FuzzStats> {
  const target = await loadTarget(options.target)
  const random = new Random(options.seed)
  const coverage = new Coverage(target.coverage)
  const watchdog = new Watchdog(
    options.target,
    target.name,
    target.maxLength + 64,
    options.timeoutMs,
    options.artifacts,
  )
  const corpus: Uint8Array[] = []
  let runs = 0
  let current: Uint8Array = new Uint8Array(0)
  let failure: string | undefined

  const fail = (error: unknown): void => {
    if (failure !== undefined) return
    mkdirSync(options.artifacts, { recursive: true })
    const file = join(
      options.artifacts,
      `${target.name}-${createHash('sha1').update(current).digest('hex').slice(0, 16)}.bin`,
    )
    writeFileSync(file, current)
    failure = describeFailure(target.name, options.target, error, current, file)
  }
  // A rejection nobody handled, raised by the input being run (a target's async path).
  const onUnhandled = (reason: unknown): void => fail(reason)
  process.on('unhandledRejection', onUnhandled)

  const runOne = async (input: Uint8Array): Promise<boolean> => {
    current = input
    watchdog.begin(input)
    try {
      await target.run(input)
    } catch (error) {
      fail(error)
    }
    watchdog.end()
    runs++
    // Checked every so often: reading RSS costs a system call.
    if ((runs & 255) === 0) {
      const rssMb = process.memoryUsage.rss() / 2 ** 20
      if (rssMb > options.rssLimitMb) {
        fail(new Error(`Resident memory ${rssMb.toFixed(0)} MB passed ${options.rssLimitMb} MB`))
      }
    }
    return coverage.collect()
  }

  try {
    const started = Date.now()
    const deadline = started + options.seconds * 1000
    const seeds = readCorpus(target.name)
    for (const seed of seeds) {
      await runOne(seed.data.subarray(0, target.maxLength))
      corpus.push(seed.data.subarray(0, target.maxLength))
      if (failure !== undefined) break
    }
    if (corpus.length === 0) corpus.push(new Uint8Array(0))
    options.log(
      `${target.name}: ${seeds.length} seeds reach ${coverage.features} features; seed ${options.seed}`,
    )
    while (failure === undefined && Date.now() < deadline) {
      // Newer entries are likelier parents: they are where the frontier is.
      const index =
        random.below(2) === 0
          ? corpus.length - 1 - random.below(Math.min(corpus.length, 8))
          : random.below(corpus.length)
      const parent = corpus[index]!
      const child = mutate(parent, random, corpus, target)
      if ((await runOne(child)) && failure === undefined) {
        corpus.push(child)
        if (options.corpusOut !== undefined) {
          mkdirSync(options.corpusOut, { recursive: true })
          writeFileSync(
            join(options.corpusOut, createHash('sha1').update(child).digest('hex').slice(0, 16)),
            child,
          )
        }
      }
    }
    const seconds = Math.max(0.001, (Date.now() - started) / 1000)
    return {
      target: target.name,
      seed: options.seed,
      runs,
      runsPerSecond: Math.round(runs / seconds),
      corpus: corpus.length,
      features: coverage.features,
      failure,
    }
  } finally {
    process.off('unhandledRejection', onUnhandled)
    await watchdog.stop()
  }
}

/** Runs one input (a saved failure) through a target and reports what it throws; hangs as in a run. */
export async function replay(
  spec: string,
  file: string,
  timeoutMs: number,
  artifacts: string,
): Promise<string | undefined> {
  const target = await loadTarget(spec)
  const input = new Uint8Array(readFileSync(file))
  const watchdog = new Watchdog(spec, target.name, input.length, timeoutMs, artifacts)
  watchdog.begin(input)
  try {
    await target.run(input)
    return undefined
  } catch (error) {
    return error instanceof Error ? (error.stack ?? error.message) : String(error)
  } finally {
    watchdog.end()
    await watchdog.stop()
  }
}

/**
 * Adds to a target's seed corpus the inputs of `dir` (a longer run's --corpus-out) that reach
 * blocks the corpus does not, shortest first; returns how many were added. An input that breaks
 * an invariant is reported instead.
 */
export async function merge(name: string, dir: string): Promise<number> {
  const target = await loadTarget(name)
  const coverage = new Coverage(target.coverage, false)
  for (const seed of readCorpus(name)) {
    await target.run(seed.data.subarray(0, target.maxLength))
    coverage.collect()
  }
  const candidates = readdirSync(dir)
    .map((file) => new Uint8Array(readFileSync(join(dir, file))).subarray(0, target.maxLength))
    .sort((a, b) => a.length - b.length)
  let added = 0
  mkdirSync(join(CORPUS_ROOT, name), { recursive: true })
  for (const input of candidates) {
    try {
      await target.run(input)
    } catch (error) {
      throw new Error(`input ${Buffer.from(input).toString('hex')} breaks an invariant`, { cause: error })
    }
    if (!coverage.collect()) continue
    const hash = createHash('sha1').update(input).digest('hex').slice(0, 16)
    writeFileSync(join(CORPUS_ROOT, name, `found-${hash}`), input)
    added++
  }
  return added
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string' },
      time: { type: 'string', default: '60' },
      seed: { type: 'string' },
      timeout: { type: 'string', default: '10000' },
      'rss-limit-mb': { type: 'string', default: '1536' },
      artifacts: { type: 'string', default: join(tmpdir(), 'rally-fuzz') },
      'corpus-out': { type: 'string' },
      merge: { type: 'string' },
      input: { type: 'string' },
    },
  })
  const positive = (name: string, text: string | undefined): number => {
    const value = Number(text)
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} must be a positive number`)
    return value
  }
  const targets = values.target === undefined || values.target === 'all' ? [...TARGET_NAMES] : [values.target]
  if (values.merge !== undefined) {
    for (const target of targets) {
      const added = await merge(target, join(values.merge, target))
      console.log(`${target}: ${added} inputs added to test/fuzz/corpus/${target}`)
    }
    return
  }
  if (values.input !== undefined) {
    if (targets.length !== 1) throw new RangeError('--input needs one --target')
    const problem = await replay(
      targets[0]!,
      values.input,
      positive('timeout', values.timeout),
      values.artifacts!,
    )
    console.log(problem === undefined ? 'input passes' : `FUZZ FAILURE (${targets[0]}): ${problem}`)
    process.exitCode = problem === undefined ? 0 : 1
    return
  }
  const seconds = positive('time', values.time)
  for (const target of targets) {
    const stats = await fuzz({
      target,
      seconds,
      seed: values.seed === undefined ? (Date.now() ^ process.pid) >>> 0 : positive('seed', values.seed),
      timeoutMs: positive('timeout', values.timeout),
      rssLimitMb: positive('rss-limit-mb', values['rss-limit-mb']),
      artifacts: values.artifacts!,
      corpusOut: values['corpus-out'] === undefined ? undefined : join(values['corpus-out'], target),
      log: (line) => console.log(line),
    })
    if (stats.failure !== undefined) {
      console.error(stats.failure)
      process.exitCode = 1
      return
    }
    const { failure: _none, ...figures } = stats
    console.log(`fuzz-stats ${JSON.stringify(figures)}`)
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exitCode = 2
  })
}
