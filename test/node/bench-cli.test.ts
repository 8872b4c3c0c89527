/**
 * `rally bench` as a real process, without running a benchmark: `--help` goes through to
 * bench/run.ts (which prints its options and exits 0 before building or starting anything), the
 * benchmark's exit code comes back, and without bench/ (an installed package) the command says
 * what it needs and exits 2.
 *
 * Every process starts in a temporary directory, not the clone: `rally bench` has to find tsx and
 * the bench script from the package root, wherever it is run from.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { UsageError as BenchUsageError, parseOptions } from '../../bench/cli-options.js'
import { UsageError } from '../../src/cli/args.js'
import { locateBench } from '../../src/cli/bench.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** tsx by URL: `--import tsx` would be looked up from the temporary working directory. */
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href

interface Outcome {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `rally ARGS` from `main` (src/cli/main.ts of a tree) in `cwd`, to the end. */
function rally(main: string, args: string[], cwd: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, main, ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
    })
    // No benchmark runs here: anything slower than starting two processes is a bug.
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

describe('rally bench', () => {
  let dir: string

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'rally-bench-cli-'))
  })

  after(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it('passes --help through to bench/run.ts, which lists its options and exits 0', async () => {
    const { code, stdout, stderr } = await rally(join(ROOT, 'src/cli/main.ts'), ['bench', '--help'], dir)
    assert.equal(code, 0, stderr)
    // The benchmark's own help, not the CLI's: its usage line, options and scenario ids.
    assert.match(stdout, /^Usage: npm run bench -- \[options\]/)
    assert.match(stdout, /--only ID/)
    assert.match(stdout, /deflate-1k/)
  })

  it("passes the other arguments through and exits with the benchmark's code", async () => {
    // bench/run.ts rejects an unknown argument before building or starting anything: one line
    // naming it, exit 2 (a usage error, as the CLI's own).
    const { code, stdout, stderr } = await rally(
      join(ROOT, 'src/cli/main.ts'),
      ['bench', '--no-such-option'],
      dir,
    )
    assert.equal(code, 2, stderr)
    assert.equal(stdout, '')
    assert.equal(stderr, 'bench: unknown argument --no-such-option (see --help)\n')
  })

  it('rejects a bad value with one line naming the flag and the reason, exit 2', async () => {
    const main = join(ROOT, 'src/cli/main.ts')
    const cases: [string[], RegExp][] = [
      [['--reps', '0'], /^bench: --reps must be a positive integer, not "0"\n$/],
      [['--duration', 'soon'], /^bench: --duration must be a number of seconds > 0/],
      [
        ['--only', 'echo-32,no-such-scenario'],
        /^bench: --only: unknown id no-such-scenario; known: echo-32,/,
      ],
      [['--servers', 'nginx'], /^bench: --servers: unknown id nginx; known: ws,/],
      [['--reps'], /^bench: --reps needs a value/],
    ]
    for (const [args, expected] of cases) {
      const { code, stderr } = await rally(main, ['bench', ...args], dir)
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`)
      assert.match(stderr, expected)
      assert.equal(stderr.trim().split('\n').length, 1, stderr)
    }
  })

  it('parses options with their defaults, and rejects contradictions and unknown ids', () => {
    const quick = parseOptions(['--quick'])
    assert.deepEqual(
      { reps: quick.reps, memoryReps: quick.memoryReps, duration: quick.duration, warmup: quick.warmup },
      { reps: 2, memoryReps: 1, duration: 0.3, warmup: 0.15 },
    )
    assert.equal(quick.docs, undefined)
    const full = parseOptions([])
    assert.deepEqual(
      [full.reps, full.memoryReps, full.duration, full.warmup, full.pin],
      [5, 3, 2, 0.75, true],
    )
    // --reps sets memory repetitions too; lists are split and checked against the known ids.
    const some = parseOptions([
      '--reps',
      '3',
      '--only',
      'echo-32,realtime-fanout',
      '--servers',
      'bun,socketio',
      '--no-pin',
    ])
    assert.deepEqual([some.reps, some.memoryReps, some.pin], [3, 3, false])
    assert.deepEqual(some.only, ['echo-32', 'realtime-fanout'])
    assert.deepEqual(some.servers, ['bun', 'socketio'])
    assert.equal(parseOptions(['--warmup', '0']).warmup, 0)
    assert.throws(() => parseOptions(['--docs', '--no-docs']), BenchUsageError)
    assert.throws(() => parseOptions(['--duration', '0']), /--duration must be a number of seconds > 0/)
    assert.throws(() => parseOptions(['--servers', 'rally']), /--servers: unknown id rally/)
  })

  it('without bench/ (an installed package): says how to run it and exits 2', async () => {
    // The CLI's sources without bench/, as in the npm package; node_modules linked so that the
    // CLI itself loads (the demo imports hono) and only the missing script is in the way.
    const tree = join(dir, 'installed')
    cpSync(join(ROOT, 'src'), join(tree, 'src'), { recursive: true })
    symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'), 'dir')
    const main = join(tree, 'src/cli/main.ts')

    const run = await rally(main, ['bench', '--quick'], dir)
    assert.equal(run.code, 2, run.stderr)
    assert.equal(run.stdout, '')
    assert.match(run.stderr, /^rally: bench needs the source checkout: no bench\/run\.ts in /)
    assert.match(run.stderr, /npm ci && npm run bench/)

    // --help still answers there, with what the command needs.
    const help = await rally(main, ['bench', '--help'], dir)
    assert.equal(help.code, 0, help.stderr)
    assert.match(help.stdout, /^Usage: rally bench \[options\]/)
    assert.match(help.stdout, /npm ci && npm run bench/)
  })

  it('finds the script and tsx from the package root, and names tsx when it is missing', () => {
    const found = locateBench(ROOT)
    assert.equal(found.script, join(ROOT, 'bench', 'run.ts'))
    assert.match(found.tsx, /^file:\/\/.*\/tsx\//)

    // bench/run.ts present, no node_modules: a clone before `npm ci`.
    const clone = join(dir, 'clone')
    mkdirSync(join(clone, 'bench'), { recursive: true })
    writeFileSync(join(clone, 'bench', 'run.ts'), '')
    assert.throws(
      () => locateBench(clone),
      (error: unknown) =>
        error instanceof UsageError &&
        /tsx is not installed/.test(error.message) &&
        /npm ci && npm run bench/.test(error.message),
    )
  })
})
