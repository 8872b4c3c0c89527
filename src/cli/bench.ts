/**
 * `rally bench`: the server benchmarks (bench/run.ts), the same as `npm run bench`, with every
 * argument passed through. They need what the npm package leaves out — bench/ itself, the dev
 * dependencies it runs with (tsx for the TypeScript, ws and bufferutil as peers) and a C compiler
 * for the load generator — so the command works from a clone and says so anywhere else.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { constants } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { UsageError } from './args.js'

export const BENCH_HELP = `Usage: rally bench [options]

Runs Rally's server benchmarks next to ws, a raw node:net server and Bun, and its real-time layer
next to Socket.IO (bench/run.ts, the same as npm run bench), passing the options through:
--quick, --only ID,..., --servers ID,...; in a clone, "rally bench --help" lists them all. Exits
with the benchmark's exit code (2 for a bad option).

Needs a clone of the repository: the npm package leaves out bench/, the dev dependencies it runs
with (tsx, ws, bufferutil, bun, socket.io) and the C load generator (built with cc). From a clone:
npm ci && npm run bench`

/** The package root: this file is src/cli/bench.ts, or dist/cli/bench.js once built. */
const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url))

const FROM_A_CLONE = 'from a clone of the repository: npm ci && npm run bench'

/**
 * The bench script and tsx (as a URL for `--import`) under `root`; a UsageError saying what is
 * missing, for an installed package, where neither is.
 */
export function locateBench(root: string): { script: string; tsx: string } {
  const script = join(root, 'bench', 'run.ts')
  if (!existsSync(script))
    throw new UsageError(
      `bench needs the source checkout: no bench/run.ts in ${root} (the npm package leaves the benchmarks out); run it ${FROM_A_CLONE}`,
    )
  let tsx: string
  try {
    // From the package root: `--import tsx` would be resolved from the working directory, which
    // need not be the clone (`npx rally bench` from elsewhere, or a test's temporary directory).
    tsx = createRequire(join(root, 'package.json')).resolve('tsx')
  } catch {
    throw new UsageError(
      `bench needs the dev dependencies: tsx is not installed in ${root}; run it ${FROM_A_CLONE}`,
    )
  }
  return { script, tsx: pathToFileURL(tsx).href }
}

export async function runBench(argv: string[]): Promise<void> {
  let bench: { script: string; tsx: string }
  try {
    bench = locateBench(PACKAGE_ROOT)
  } catch (error) {
    // Help answers even without a checkout: what the command is and what it needs. With one, the
    // benchmark's own --help (every option) is the better answer, so it goes through below.
    if (argv.includes('--help') || argv.includes('-h')) {
      console.log(BENCH_HELP)
      return
    }
    throw error
  }
  const child = spawn(process.execPath, ['--import', bench.tsx, bench.script, ...argv], {
    stdio: 'inherit',
  })
  // Ctrl-C reaches the whole process group, the benchmark included; a SIGTERM or SIGINT sent to
  // this process alone (a supervisor, `kill PID`) must reach it too, or its servers and load
  // generator would outlive the run. The benchmark stops them and exits; so does this process, then.
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal)
  }
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  try {
    process.exitCode = await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code, signal) => {
        // Killed by a signal: the shell's convention, 128 + its number.
        resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal]))
      })
    })
  } finally {
    process.off('SIGINT', forward)
    process.off('SIGTERM', forward)
  }
}
