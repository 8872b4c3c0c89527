/**
 * Protocol core benchmark: Rally's sans-I/O core side by side with `ws`'s own Receiver and Sender.
 *
 *   npm run bench:parser                 full run (about 2 minutes)
 *   npm run bench:parser -- --quick      short run (under 20 s; noisier)
 *
 * Options: --reps N (default 5), --only parse,frame,utf8, --filter SUBSTRING (case id),
 * --child native|js (run one child directly and print its JSON, e.g. under `node --cpu-prof`).
 *
 * Sections:
 *   1. parse  — server side: masked client frames, pre-built (16 MiB per pass), fed in 64 KiB chunks
 *               like socket reads, to `Connection('server').receive` and to ws `Receiver.write`.
 *               Both unmask in place, so the input is restored from a pristine copy before each
 *               pass, outside the timed region. Every pass checks the message count and bytes.
 *   2. frame  — server side unmasked frames (`sendBinary` / `sendText`; frames up to 512 bytes
 *               through `writeSmallFrame` into a reused buffer, as the socket driver takes them)
 *               vs static `Sender.frame`,
 *               and client side masked frames (Rally client `Connection` vs `Sender.frame` with
 *               `mask: true, readOnly: true`, the options `WebSocket#send` uses for a caller's
 *               Buffer: the payload is copied while masked, as Rally does).
 *   3. utf8   — `Utf8Validator.push` vs a streaming fatal `TextDecoder` vs `utf-8-validate` vs plain
 *               `buffer.isUtf8` (what ws itself calls on Node >= 18.14, whatever the env says).
 *
 * ws picks its native helpers when it is loaded, so the parent runs two child processes one after
 * the other: "native" (bufferutil, utf-8-validate available) and "js" (WS_NO_BUFFER_UTIL=1,
 * WS_NO_UTF_8_VALIDATE=1). Rally runs in both, so every ratio pairs two samples from one process.
 * Within a case the implementations are interleaved (A B, B A, A B, ... — the order alternates
 * each round to cancel drift); each sample runs for a fixed time. Reported: median [min-max] of
 * the samples, and the median [min-max] of the per-round ratios Rally/other (> 1: Rally faster).
 * Raw samples go to bench/results/parser.json.
 */
import { Buffer, isUtf8 } from 'node:buffer'
import { spawnSync } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus } from 'node:os'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Connection, type ConnectionHandler } from '../src/protocol/connection.js'
import { encodeSmallFrameAt } from '../src/protocol/frame-writer.js'
import { Utf8Validator } from '../src/protocol/utf8.js'

// ------------------------------------------------------------------ configuration

type Mode = 'native' | 'js'
type Section = 'parse' | 'frame' | 'utf8'

interface Config {
  quick: boolean
  reps: number
  /** Timed milliseconds per sample, by section. */
  sampleMs: Record<Section, number>
  /** Bytes of frames per parse pass. */
  parseBytes: number
  only: Section[]
  filter: string | undefined
}

const KiB = 1024
const MiB = 1024 * KiB
const CHUNK = 64 * KiB
const MAX_PAYLOAD = 16 * MiB

function parseArgs(argv: string[]): { config: Config; child: Mode | undefined } {
  let quick = false
  let reps = 5
  let only: Section[] = ['parse', 'frame', 'utf8']
  let filter: string | undefined
  let child: Mode | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--quick') quick = true
    else if (arg === '--reps') reps = Number(argv[++i])
    else if (arg === '--only') only = String(argv[++i]).split(',') as Section[]
    else if (arg === '--filter') filter = argv[++i]
    else if (arg === '--child') child = argv[++i] as Mode
    else throw new Error(`Unknown argument ${arg}`)
  }
  if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer')
  if (child !== undefined && child !== 'native' && child !== 'js') throw new Error('--child native|js')
  const sampleMs: Record<Section, number> = quick
    ? { parse: 100, frame: 35, utf8: 20 }
    : { parse: 750, frame: 250, utf8: 150 }
  return {
    config: { quick, reps, sampleMs, parseBytes: quick ? 4 * MiB : 16 * MiB, only, filter },
    child,
  }
}

// ------------------------------------------------------------------ results

interface Sample {
  ops: number
  seconds: number
}

interface CaseResult {
  section: Section
  id: string
  label: string
  /** Payload bytes per operation (message, frame, or validated buffer). */
  payloadBytes: number
  /** Implementations in column order; the first is Rally's. */
  impls: string[]
  /** samples[impl][round] */
  samples: Record<string, Sample[]>
}

interface ChildResult {
  mode: Mode
  node: string
  ws: { version: string; unmask: string; utf8: string }
  cases: CaseResult[]
}

// ------------------------------------------------------------------ inputs

function textBytes(size: number, ascii: boolean): Buffer {
  const pattern = ascii
    ? '{"id":12345,"name":"Zoe Angstrom","city":"Zurich","price":"EUR 42","tags":["a","b"],"ok":true} '
    : '{"id":1,"name":"Zoë Ångström","city":"Zürich","price":"€42","mood":"🙂","tags":["α","β"],"ok":true} '
  const source = Buffer.from(pattern.repeat(Math.ceil(size / Buffer.byteLength(pattern)) + 1))
  // Cut at a code point boundary and pad with spaces to the exact size.
  let cut = size
  while (cut > 0 && (source[cut]! & 0xc0) === 0x80) cut--
  const out = Buffer.alloc(size, 0x20)
  source.copy(out, 0, 0, cut)
  if (!isUtf8(out)) throw new Error('bad text sample')
  return out
}

function binaryBytes(size: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(size))
}

/** Whole masked frames (FIN set, random non-zero keys) filling about `targetBytes`. */
function buildMaskedFrames(opcode: number, payload: Buffer, targetBytes: number) {
  const length = payload.length
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8
  const headerBytes = 2 + lengthBytes + 4
  const frameBytes = headerBytes + length
  const frames = Math.max(1, Math.floor(targetBytes / frameBytes))
  const out = Buffer.allocUnsafe(frames * frameBytes)
  const keys = randomFillSync(Buffer.allocUnsafe(frames * 4))
  let p = 0
  for (let f = 0; f < frames; f++) {
    out[p] = 0x80 | opcode
    if (lengthBytes === 0) {
      out[p + 1] = 0x80 | length
    } else if (lengthBytes === 2) {
      out[p + 1] = 0x80 | 126
      out.writeUInt16BE(length, p + 2)
    } else {
      out[p + 1] = 0x80 | 127
      out.writeUInt32BE(Math.floor(length / 0x100000000), p + 2)
      out.writeUInt32BE(length >>> 0, p + 6)
    }
    const k = p + 2 + lengthBytes
    // ws skips unmasking an all-zero key; keep every key non-zero so both really unmask.
    if (keys.readUInt32BE(f * 4) === 0) keys[f * 4] = 1
    keys.copy(out, k, f * 4, f * 4 + 4)
    const d = k + 4
    for (let i = 0; i < length; i++) out[d + i] = payload[i]! ^ keys[f * 4 + (i & 3)]!
    p += frameBytes
  }
  return { wire: out, frames }
}

// ------------------------------------------------------------------ timing

const gc: (() => void) | undefined = (globalThis as { gc?: () => void }).gc

/** Calls `run(batch)` until `ms` have passed; the whole loop is timed. */
function timeLoop(run: (n: number) => void, batch: number, ms: number): Sample {
  let ops = 0
  const start = performance.now()
  let now = start
  do {
    run(batch)
    ops += batch
    now = performance.now()
  } while (now - start < ms)
  return { ops, seconds: (now - start) / 1000 }
}

/**
 * Interleaves the implementations round by round (order reversed every other round), after one
 * untimed warm-up sample each.
 */
function compare(
  base: Omit<CaseResult, 'samples' | 'impls'>,
  impls: Record<string, (ms: number) => Sample>,
  ms: number,
  config: Config,
): CaseResult {
  const names = Object.keys(impls)
  const samples: Record<string, Sample[]> = {}
  for (const name of names) {
    samples[name] = []
    impls[name]!(Math.max(ms / 3, 20))
  }
  for (let round = 0; round < config.reps; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse()
    for (const name of order) {
      gc?.()
      samples[name]!.push(impls[name]!(ms))
    }
  }
  const result: CaseResult = { ...base, impls: names, samples }
  const line = names
    .map((n) => `${n} ${fmtRate(median(samples[n]!.map((s) => s.ops / s.seconds)))}/s`)
    .join(', ')
  process.stderr.write(`  ${base.id}: ${line}\n`)
  return result
}

// ------------------------------------------------------------------ ws (loaded in the child only)

interface WsReceiver {
  write(chunk: Buffer): boolean
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this
  on(event: 'error', listener: (error: Error) => void): this
}
type WsReceiverClass = new (options: { isServer: boolean; maxPayload: number }) => WsReceiver
interface WsFrameOptions {
  fin: boolean
  opcode: number
  mask: boolean
  readOnly: boolean
  rsv1: boolean
}
interface WsSenderClass {
  frame(data: Buffer | string, options: WsFrameOptions): Buffer[]
}

function loadWs() {
  const require = createRequire(import.meta.url)
  // ws's package exports hide lib/; its index exports Receiver and Sender, and the helpers are
  // required by absolute path (the same module instances ws uses) to see what ws picked.
  const ws = require('ws') as { Receiver: WsReceiverClass; Sender: WsSenderClass }
  const lib = join(dirname(require.resolve('ws')), 'lib')
  const Receiver = ws.Receiver
  const Sender = ws.Sender
  const bufferUtil = require(join(lib, 'buffer-util.js')) as { unmask: (...args: unknown[]) => void }
  const validation = require(join(lib, 'validation.js')) as { isValidUTF8: (...args: unknown[]) => boolean }
  if (require(join(lib, 'receiver.js')) !== Receiver) throw new Error('two copies of ws loaded')
  const version = (require('ws/package.json') as { version: string }).version
  const unmaskSource = bufferUtil.unmask.toString()
  const utf8Source = validation.isValidUTF8.toString()
  const unmask = unmaskSource.includes('bufferUtil')
    ? 'bufferutil'
    : unmaskSource.includes('websocketUnmask')
      ? 'node:http websocketUnmask'
      : 'js'
  const utf8 = utf8Source.includes('isUtf8(buf)')
    ? 'buffer.isUtf8 (js below 24 B)'
    : utf8Source.includes('isValidUTF8(buf)')
      ? 'utf-8-validate (js below 32 B)'
      : 'js'
  return { Receiver, Sender, info: { version, unmask, utf8 }, require }
}

// ------------------------------------------------------------------ 1. parse

function parseCases(config: Config, ws: ReturnType<typeof loadWs>): CaseResult[] {
  const results: CaseResult[] = []
  const sizes = [32, 64 * KiB]
  for (const binary of [true, false]) {
    for (const size of sizes) {
      const id = `parse:${binary ? 'binary' : 'text'}-${sizeName(size)}`
      if (config.filter !== undefined && !id.includes(config.filter)) continue
      const payload = binary ? binaryBytes(size) : textBytes(size, false)
      const { wire, frames } = buildMaskedFrames(binary ? 2 : 1, payload, config.parseBytes)
      const work = Buffer.allocUnsafe(wire.length)
      const chunks: Buffer[] = []
      for (let o = 0; o < work.length; o += CHUNK)
        chunks.push(work.subarray(o, Math.min(o + CHUNK, work.length)))
      const expectedBytes = frames * size

      // Each target counts messages and bytes; `check` keeps a copy of the first message.
      const makeRally = () => {
        const state = { count: 0, bytes: 0, first: undefined as Buffer | undefined, check: false }
        const handler: ConnectionHandler = {
          write() {},
          closeTransport() {},
          message(data, isBinary) {
            if (isBinary !== binary) throw new Error('wrong message type')
            state.count++
            state.bytes += data.length
            if (state.check && state.first === undefined) state.first = Buffer.from(data)
          },
          ping() {},
          pong() {},
          closeReceived() {},
          protocolError(error) {
            throw error
          },
        }
        const connection = new Connection('server', handler, { limits: { maxMessageSize: MAX_PAYLOAD } })
        return { state, feed: (chunk: Buffer) => connection.receive(chunk) }
      }
      const makeWs = () => {
        const state = { count: 0, bytes: 0, first: undefined as Buffer | undefined, check: false }
        const receiver = new ws.Receiver({ isServer: true, maxPayload: MAX_PAYLOAD })
        receiver.on('message', (data, isBinary) => {
          if (isBinary !== binary) throw new Error('wrong message type')
          state.count++
          state.bytes += data.length
          if (state.check && state.first === undefined) state.first = Buffer.from(data)
        })
        receiver.on('error', (error) => {
          throw error
        })
        return { state, feed: (chunk: Buffer) => receiver.write(chunk) }
      }

      const sampler = (make: typeof makeRally, name: string) => {
        let checked = false
        return (ms: number): Sample => {
          const target = make()
          let elapsed = 0
          let ops = 0
          do {
            work.set(wire) // untimed: a fresh copy, since both unmask in place
            target.state.check = !checked
            const before = target.state.count
            const beforeBytes = target.state.bytes
            const start = performance.now()
            for (let i = 0; i < chunks.length; i++) target.feed(chunks[i]!)
            elapsed += performance.now() - start
            if (
              target.state.count - before !== frames ||
              target.state.bytes - beforeBytes !== expectedBytes
            ) {
              throw new Error(`${name} ${id}: ${target.state.count - before} of ${frames} messages`)
            }
            if (!checked) {
              if (!target.state.first?.equals(payload)) throw new Error(`${name} ${id}: wrong payload`)
              checked = true
            }
            ops += frames
          } while (elapsed < ms)
          return { ops, seconds: elapsed / 1000 }
        }
      }
      results.push(
        compare(
          {
            section: 'parse',
            id,
            label: `${binary ? 'binary' : 'text'} ${sizeName(size)}`,
            payloadBytes: size,
          },
          { rally: sampler(makeRally, 'rally'), ws: sampler(makeWs, 'ws') },
          config.sampleMs.parse,
          config,
        ),
      )
    }
  }
  return results
}

// ------------------------------------------------------------------ 2. frame

function frameCases(config: Config, ws: ReturnType<typeof loadWs>, mode: Mode): CaseResult[] {
  const results: CaseResult[] = []
  let sink = 0
  // Like the Node socket driver, the handler takes small server frames through writeSmallFrame,
  // encoding them into an output buffer it reuses (the driver's per-turn gathered buffer).
  const output = Buffer.allocUnsafe(16 * KiB)
  let outputLength = 0
  const handler: ConnectionHandler = {
    write(header, payload) {
      sink += header.length + (payload === undefined ? 0 : payload.length)
    },
    writeSmallFrame(firstByte, payload) {
      if (outputLength + payload.length + 4 > output.length) outputLength = 0
      outputLength = encodeSmallFrameAt(output, outputLength, firstByte, payload)
      sink += payload.length
    },
    closeTransport() {},
    message() {},
    ping() {},
    pong() {},
    closeReceived() {},
    protocolError() {},
  }
  const server = new Connection('server', handler)
  const client = new Connection('client', handler)
  const sizes = [32, 64 * KiB]
  type Kind = 'server-binary' | 'server-text' | 'client-binary'
  // Unmasked framing does not touch bufferutil: the server cases run in the native child only.
  const kinds: Kind[] =
    mode === 'native' ? ['server-binary', 'server-text', 'client-binary'] : ['client-binary']
  for (const kind of kinds) {
    for (const size of sizes) {
      const id = `frame:${kind}-${sizeName(size)}`
      if (config.filter !== undefined && !id.includes(config.filter)) continue
      const masked = kind === 'client-binary'
      const bytes = kind === 'server-text' ? textBytes(size, false) : binaryBytes(size)
      const text = bytes.toString('utf8')
      const options: WsFrameOptions = {
        fin: true,
        opcode: kind === 'server-text' ? 1 : 2,
        mask: masked,
        readOnly: true,
        rsv1: false,
      }
      const batch = masked && size > 1024 ? 16 : 1024
      let rally: (n: number) => void
      let wsRun: (n: number) => void
      if (kind === 'server-text') {
        rally = (n) => {
          for (let i = 0; i < n; i++) server.sendText(text)
        }
        wsRun = (n) => {
          for (let i = 0; i < n; i++) sink += ws.Sender.frame(text, options)[0]!.length
        }
      } else {
        const connection = masked ? client : server
        rally = (n) => {
          for (let i = 0; i < n; i++) connection.sendBinary(bytes)
        }
        wsRun = (n) => {
          for (let i = 0; i < n; i++) sink += ws.Sender.frame(bytes, options)[0]!.length
        }
      }
      results.push(
        compare(
          {
            section: 'frame',
            id,
            label: `${kind.replace('-', ' ')} ${sizeName(size)}`,
            payloadBytes: size,
          },
          {
            rally: (ms) => timeLoop(rally, batch, ms),
            ws: (ms) => timeLoop(wsRun, batch, ms),
          },
          config.sampleMs.frame,
          config,
        ),
      )
    }
  }
  if (sink === 0) throw new Error('nothing framed')
  return results
}

// ------------------------------------------------------------------ 3. utf8

function utf8Cases(config: Config, ws: ReturnType<typeof loadWs>): CaseResult[] {
  const results: CaseResult[] = []
  const utf8Validate = ws.require('utf-8-validate') as (buffer: Uint8Array) => boolean
  for (const ascii of [true, false]) {
    for (const size of [32, 64 * KiB]) {
      const id = `utf8:${ascii ? 'ascii' : 'mixed'}-${sizeName(size)}`
      if (config.filter !== undefined && !id.includes(config.filter)) continue
      const bytes = textBytes(size, ascii)
      const batch = size > 1024 ? 16 : 4096
      const validator = new Utf8Validator()
      const decoder = new TextDecoder('utf-8', { fatal: true })
      let valid = 0
      const impls: Record<string, (ms: number) => Sample> = {
        rally: (ms) =>
          timeLoop(
            (n) => {
              for (let i = 0; i < n; i++) {
                validator.reset()
                if (validator.push(bytes) && validator.complete) valid++
              }
            },
            batch,
            ms,
          ),
        TextDecoder: (ms) =>
          timeLoop(
            (n) => {
              for (let i = 0; i < n; i++) valid += decoder.decode(bytes, { stream: true }).length > 0 ? 1 : 0
            },
            batch,
            ms,
          ),
        'utf-8-validate': (ms) =>
          timeLoop(
            (n) => {
              for (let i = 0; i < n; i++) if (utf8Validate(bytes)) valid++
            },
            batch,
            ms,
          ),
        'buffer.isUtf8': (ms) =>
          timeLoop(
            (n) => {
              for (let i = 0; i < n; i++) if (isUtf8(bytes)) valid++
            },
            batch,
            ms,
          ),
      }
      results.push(
        compare(
          {
            section: 'utf8',
            id,
            label: `${ascii ? 'ascii' : 'mixed'} ${sizeName(size)}`,
            payloadBytes: size,
          },
          impls,
          config.sampleMs.utf8,
          config,
        ),
      )
      if (valid === 0) throw new Error('nothing validated')
    }
  }
  return results
}

// ------------------------------------------------------------------ child

function runChild(mode: Mode, config: Config): ChildResult {
  const ws = loadWs()
  process.stderr.write(`[${mode}] ws ${ws.info.version}: unmask ${ws.info.unmask}, utf8 ${ws.info.utf8}\n`)
  const cases: CaseResult[] = []
  if (config.only.includes('parse')) cases.push(...parseCases(config, ws))
  if (config.only.includes('frame')) cases.push(...frameCases(config, ws, mode))
  // Independent of ws's build: run once, in the native child.
  if (config.only.includes('utf8') && mode === 'native') cases.push(...utf8Cases(config, ws))
  return { mode, node: process.version, ws: ws.info, cases }
}

// ------------------------------------------------------------------ statistics and report

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

interface Stats {
  median: number
  min: number
  max: number
}

function stats(values: number[]): Stats {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) }
}

function sizeName(size: number): string {
  return size >= KiB ? `${size / KiB} KiB` : `${size} B`
}

function fmtRate(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(2)}G`
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`
  return value.toFixed(0)
}

function fmtMBs(bytesPerSecond: number): string {
  const mb = bytesPerSecond / 1e6
  return mb >= 100 ? mb.toFixed(0) : mb.toFixed(1)
}

function fmtStats(s: Stats, format: (v: number) => string): string {
  return `${format(s.median)} [${format(s.min)}–${format(s.max)}]`
}

interface Summary {
  mode: Mode
  section: Section
  id: string
  label: string
  payloadBytes: number
  opsPerSecond: Record<string, Stats>
  mbPerSecond: Record<string, Stats>
  /** Pair by pair, Rally over each other implementation (> 1: Rally faster). */
  ratio: Record<string, Stats>
}

function summarize(child: ChildResult): Summary[] {
  return child.cases.map((c) => {
    const opsPerSecond: Record<string, Stats> = {}
    const mbPerSecond: Record<string, Stats> = {}
    const ratio: Record<string, Stats> = {}
    const rates: Record<string, number[]> = {}
    for (const impl of c.impls) {
      rates[impl] = c.samples[impl]!.map((s) => s.ops / s.seconds)
      opsPerSecond[impl] = stats(rates[impl]!)
      mbPerSecond[impl] = stats(rates[impl]!.map((r) => (r * c.payloadBytes) / 1e6))
    }
    const [rally, ...others] = c.impls
    for (const other of others) {
      ratio[other] = stats(rates[rally!]!.map((r, i) => r / rates[other]![i]!))
    }
    return {
      mode: child.mode,
      section: c.section,
      id: c.id,
      label: c.label,
      payloadBytes: c.payloadBytes,
      opsPerSecond,
      mbPerSecond,
      ratio,
    }
  })
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

const SECTION_TITLES: Record<Section, string> = {
  parse:
    '1. Parse — server receives masked client frames in 64 KiB reads (Connection.receive vs Receiver.write)',
  frame:
    '2. Frame — Connection.sendBinary/sendText (to handler.write, or writeSmallFrame as the socket driver does) vs static Sender.frame',
  utf8: '3. UTF-8 validation of one valid buffer (Utf8Validator.reset+push vs others)',
}

function report(children: ChildResult[], summaries: Summary[]): string {
  const out: string[] = []
  const wsLine = children.map((c) => `${c.mode}: unmask=${c.ws.unmask}, utf8=${c.ws.utf8}`).join('; ')
  out.push(
    `node ${process.version}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, ws ${children[0]?.ws.version}`,
  )
  out.push(`ws helpers as loaded — ${wsLine}`)
  out.push('Figures: median [min–max] over the rounds; Rally/ws is the per-round ratio of throughputs.')
  const buildName = (mode: Mode) => (mode === 'native' ? 'bufferutil' : 'pure JS')
  for (const section of ['parse', 'frame'] as const) {
    const rows = summaries.filter((s) => s.section === section)
    if (rows.length === 0) continue
    out.push('', SECTION_TITLES[section])
    // Case order as run; for each case the bufferutil row, then the pure-JS one.
    const ids = [...new Set(rows.map((r) => r.id))]
    const ordered = ids.flatMap((id) =>
      (['native', 'js'] as const).flatMap((mode) => rows.filter((r) => r.id === id && r.mode === mode)),
    )
    out.push(
      table(
        ['case', 'ws build', 'Rally msg/s', 'ws msg/s', 'Rally MB/s', 'ws MB/s', 'Rally/ws'],
        ordered.map((s) => [
          s.label,
          s.section === 'frame' && !s.id.includes('client') ? '(n/a)' : buildName(s.mode),
          fmtStats(s.opsPerSecond.rally!, fmtRate),
          fmtStats(s.opsPerSecond.ws!, fmtRate),
          fmtMBs(s.mbPerSecond.rally!.median * 1e6),
          fmtMBs(s.mbPerSecond.ws!.median * 1e6),
          fmtStats(s.ratio.ws!, (v) => v.toFixed(2)),
        ]),
      ),
    )
  }
  const utf8 = summaries.filter((s) => s.section === 'utf8')
  if (utf8.length > 0) {
    out.push('', SECTION_TITLES.utf8)
    const others = Object.keys(utf8[0]!.ratio)
    out.push(
      table(
        ['case', 'Rally calls/s', 'Rally MB/s', ...others.flatMap((o) => [`${o} calls/s`, `Rally/${o}`])],
        utf8.map((s) => [
          s.label,
          fmtStats(s.opsPerSecond.rally!, fmtRate),
          fmtMBs(s.mbPerSecond.rally!.median * 1e6),
          ...others.flatMap((o) => [
            fmtRate(s.opsPerSecond[o]!.median),
            fmtStats(s.ratio[o]!, (v) => v.toFixed(2)),
          ]),
        ]),
      ),
    )
  }
  return out.join('\n')
}

// ------------------------------------------------------------------ parent

function runParent(config: Config, argv: string[]): void {
  const script = fileURLToPath(import.meta.url)
  const children: ChildResult[] = []
  const started = performance.now()
  for (const mode of ['native', 'js'] as const) {
    const env = { ...process.env }
    if (mode === 'js') {
      env.WS_NO_BUFFER_UTIL = '1'
      env.WS_NO_UTF_8_VALIDATE = '1'
    } else {
      delete env.WS_NO_BUFFER_UTIL
      delete env.WS_NO_UTF_8_VALIDATE
    }
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, '--expose-gc', script, ...argv, '--child', mode],
      { env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * MiB, encoding: 'utf8' },
    )
    if (child.status !== 0) throw new Error(`${mode} child failed with status ${child.status}`)
    children.push(JSON.parse(child.stdout) as ChildResult)
  }
  const summaries = children.flatMap(summarize)
  const text = report(children, summaries)
  process.stdout.write(`\n${text}\n\n(total ${((performance.now() - started) / 1000).toFixed(1)} s)\n`)
  const dir = fileURLToPath(new URL('./results/', import.meta.url))
  mkdirSync(dir, { recursive: true })
  const file = `${dir}parser.json`
  writeFileSync(
    file,
    `${JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, config, summaries, children }, null, 2)}\n`,
  )
  process.stdout.write(`raw results: ${file}\n`)
}

const argv = process.argv.slice(2)
const { config, child } = parseArgs(argv)
if (child !== undefined) {
  process.stdout.write(`${JSON.stringify(runChild(child, config))}\n`)
} else {
  runParent(config, argv)
}
