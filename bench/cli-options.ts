/**
 * The runner's command line: `node:util` `parseArgs` (strict: an unknown flag or a flag without its
 * value is an error), then validation of every value. A bad command line is a UsageError, which
 * the runner prints as one line and exits 2 on, before it builds or starts anything.
 */
import { parseArgs } from 'node:util'
import {
  estimateSeconds,
  PEER_IDS,
  SCENARIO_GROUPS,
  SCENARIO_IDS,
  type ServerId,
  scenarios,
} from './scenarios.js'

export interface Options {
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

/** A bad command line: the runner prints the message and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

const FLAGS = {
  quick: { type: 'boolean' },
  reps: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  only: { type: 'string' },
  servers: { type: 'string' },
  docs: { type: 'boolean' },
  'no-docs': { type: 'boolean' },
  'cpu-prof': { type: 'boolean' },
  'no-pin': { type: 'boolean' },
} as const

/** parseArgs' own messages are long and name the API; this says which argument and why. */
function usageFromParseError(error: unknown): UsageError {
  const code = (error as { code?: string }).code
  const message = error instanceof Error ? error.message : String(error)
  const flag = /'(--?[\w-]+)/.exec(message)?.[1]
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
    return new UsageError(`unknown argument ${flag ?? message} (see --help)`)
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE')
    return new UsageError(`${flag ?? 'an option'} needs a value (see --help)`)
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
    return new UsageError(`unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''} (see --help)`)
  return new UsageError(message.split('\n')[0]!)
}

function positiveInteger(flag: string, text: string): number {
  const value = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1)
    throw new UsageError(`${flag} must be a positive integer, not ${JSON.stringify(text)}`)
  return value
}

function seconds(flag: string, text: string, allowZero: boolean): number {
  const value = Number(text)
  if (
    text.trim() === '' ||
    !Number.isFinite(value) ||
    value < 0 ||
    (!allowZero && value === 0) ||
    value > 3600
  )
    throw new UsageError(
      `${flag} must be a number of seconds${allowZero ? ' ≥ 0' : ' > 0'} (at most 3600), not ${JSON.stringify(text)}`,
    )
  return value
}

/** A comma-separated list of ids, each one of `known`. */
function idList(flag: string, text: string, known: readonly string[]): string[] {
  const ids = text.split(',').map((id) => id.trim())
  const unknown = ids.filter((id) => !known.includes(id))
  if (unknown.length > 0 || ids.length === 0)
    throw new UsageError(`${flag}: unknown id ${unknown.join(', ') || '(empty)'}; known: ${known.join(', ')}`)
  return ids
}

export function parseOptions(argv: string[]): Options {
  let values: ReturnType<typeof parseArgs<{ options: typeof FLAGS; strict: true }>>['values']
  try {
    values = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values
  } catch (error) {
    throw usageFromParseError(error)
  }
  const quick = values.quick === true
  if (values.docs === true && values['no-docs'] === true)
    throw new UsageError('--docs and --no-docs contradict each other')
  const reps = values.reps === undefined ? undefined : positiveInteger('--reps', values.reps)
  return {
    quick,
    reps: reps ?? (quick ? 2 : 5),
    memoryReps: reps ?? (quick ? 1 : 3),
    warmup: values.warmup === undefined ? (quick ? 0.15 : 0.75) : seconds('--warmup', values.warmup, true),
    duration:
      values.duration === undefined ? (quick ? 0.3 : 2) : seconds('--duration', values.duration, false),
    only:
      values.only === undefined
        ? undefined
        : [
            ...new Set(
              idList('--only', values.only, [...SCENARIO_IDS, ...Object.keys(SCENARIO_GROUPS)]).flatMap(
                (id) => SCENARIO_GROUPS[id] ?? [id],
              ),
            ),
          ],
    servers:
      values.servers === undefined
        ? undefined
        : (idList('--servers', values.servers, PEER_IDS) as ServerId[]),
    docs: values.docs === true ? true : values['no-docs'] === true ? false : undefined,
    cpuProf: values['cpu-prof'] === true,
    pin: values['no-pin'] !== true,
  }
}

/**
 * How long `npm run bench` with no options takes, in minutes: every scenario at the default
 * repetitions and windows, with as many idle connections as the scenarios ever open.
 */
export function fullRunMinutes(): number {
  const options = parseOptions([])
  const files = { text: 'payload-1k.json', deflated: 'payload-1k.deflate', deflatedWithWindow: {} }
  return Math.round(estimateSeconds(scenarios(options, files, 19_900), options) / 60)
}

export const HELP = `Usage: npm run bench -- [options]    (or, from a clone: rally bench [options])

Rally's server benchmarks next to ws (plain and with bufferutil), ws pre-framed, a raw node:net
server and Bun's built-in server (where Bun runs); Rally's real-time layer next to Rally's raw
topics and Socket.IO 4, over its SSE and long-polling transports, and as a cluster of nodes on
Redis next to Socket.IO's Redis adapter; WebSockets over HTTP/2 next to HTTP/1.1 over TLS. Driven
by a C load generator (bench/loadgen, built with cc) and, for HTTP transports and HTTP/2, Node ones
(bench/loadgen/fanout.ts, h2.ts). A full run takes about ${fullRunMinutes()} minutes on a 2-core machine, runs
every scenario below and writes docs/benchmarks.md and docs/benchmarks.svg; raw results go to
bench/results/.

Options:
  --quick              short run (a few minutes) for development; no docs unless --docs
  --reps N             repetitions per scenario (default 5, quick 2; memory 3, quick 1)
  --duration S         seconds measured per repetition (default 2, quick 0.3)
  --warmup S           seconds of load before each measured window (default 0.75, quick 0.15)
  --only ID,...        these scenarios only (ids below, or a group: ${Object.keys(SCENARIO_GROUPS).join(', ')})
  --servers ID,...     these peers only, always with rally (and the real-time layer in its own
                       scenarios): ${PEER_IDS.join(', ')}
  --docs, --no-docs    write the report or not (default: only after a full run; partial runs
                       save bench/results/bench-partial.json)
  --cpu-prof           CPU-profile each scenario's subject server (bench/results/profiles/)
  --no-pin             do not pin the server to CPU 0 and the load generator to CPU 1
  --render [FILE]      write docs/benchmarks.md and .svg again from saved results (default
                       bench/results/bench.json), e.g. after editing bench/profile-notes.md
  --help               this text

Scenarios, in the order they run (--quick leaves idle-max out unless --only names it):
${SCENARIO_IDS.map((id) => `  ${id}`).join('\n')}

Groups: ${Object.entries(SCENARIO_GROUPS)
  .map(([name, ids]) => `${name} (${ids.join(', ')})`)
  .join('; ')}`
