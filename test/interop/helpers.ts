/**
 * Shared plumbing for the interop tests: child processes (the `rally` CLI, Python peers) with
 * line-based stdout, every wait bounded by a timeout, every process killed when a test ends.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { sleep, withTimeout } from '../support/timing.js'

/** Debian's Python, with python3-websockets (the first python3 on PATH may lack it). */
export const PYTHON = '/usr/bin/python3'
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const PEERS = fileURLToPath(new URL('./peers/', import.meta.url))
const CLI = ['--import', 'tsx', 'src/cli/main.ts']

/** Fails with a clear message when the Python peer cannot run. */
export function requirePythonWebsockets(): void {
  const probe = spawnSync(PYTHON, ['-c', 'import websockets; print(websockets.__version__)'], {
    encoding: 'utf8',
    timeout: 10_000,
  })
  assert.equal(
    probe.status,
    0,
    `${PYTHON} cannot import websockets (the test set-up, scripts/ensure-system-deps.mjs, installs ` +
      `python3-websockets): ${probe.stderr}`,
  )
}

export { sleep as delay, withTimeout }

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** A child process whose stdout is read line by line. */
export class Child {
  readonly process: ChildProcess
  readonly lines: string[] = []
  stderr = ''
  readonly exited: Promise<Exit>
  private partial = ''
  private waiters: (() => void)[] = []
  private exit: Exit | undefined

  constructor(
    readonly name: string,
    command: string,
    args: string[],
  ) {
    this.process = spawn(command, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    this.process.stdout!.setEncoding('utf8')
    this.process.stderr!.setEncoding('utf8')
    this.process.stdout!.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n')
      this.partial = parts.pop()!
      this.lines.push(...parts)
      this.wake()
    })
    this.process.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk
    })
    // The child may exit before reading its stdin; a write then fails with EPIPE.
    this.process.stdin!.on('error', () => {})
    this.exited = new Promise((resolve) => {
      this.process.once('error', (error) => {
        this.stderr += `spawn error: ${error.message}\n`
        this.exit = { code: null, signal: null }
        this.wake()
        resolve(this.exit)
      })
      this.process.once('close', (code, signal) => {
        if (this.partial !== '') this.lines.push(this.partial)
        this.partial = ''
        this.exit = { code, signal }
        this.wake()
        resolve(this.exit)
      })
    })
  }

  /** All of stdout so far. */
  get stdout(): string {
    return this.lines.join('\n') + (this.partial === '' ? '' : `\n${this.partial}`)
  }

  /** Waits for a stdout line that `match` accepts, and returns what it returned. */
  async waitForLine<T>(
    match: (line: string) => T | undefined,
    ms: number,
    what = 'a line',
    from = 0,
  ): Promise<T> {
    const deadline = Date.now() + ms
    for (let seen = from; ; ) {
      for (; seen < this.lines.length; seen++) {
        const result = match(this.lines[seen]!)
        if (result !== undefined) return result
      }
      if (this.exit !== undefined) {
        throw new Error(
          `${this.name} exited (${this.exit.code ?? this.exit.signal}) before ${what}\n` +
            `stdout: ${this.stdout}\nstderr: ${this.stderr}`,
        )
      }
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new Error(
          `timed out after ${ms} ms waiting for ${what} from ${this.name}\n` +
            `stdout: ${this.stdout}\nstderr: ${this.stderr}`,
        )
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  /** Waits for the process to exit. */
  waitForExit(ms: number): Promise<Exit> {
    return withTimeout(this.exited, ms, `${this.name} to exit (stderr: ${this.stderr})`)
  }

  write(text: string): void {
    this.process.stdin!.write(text)
  }

  /** Kills the process (SIGKILL) if it is still running, and waits for it. */
  async kill(): Promise<void> {
    if (this.exit === undefined && this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGKILL')
    }
    await withTimeout(this.exited, 5000, `${this.name} to die`).catch(() => {})
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter()
  }
}

/** `node --import tsx src/cli/main.ts ARGS...`, as the `rally` binary runs. */
export function rallyCli(args: string[]): Child {
  return new Child(`rally ${args[0]}`, process.execPath, [...CLI, ...args])
}

export interface RallyEcho {
  child: Child
  url: string
  port: number
  /** The readiness line, as printed. */
  line: string
}

/** Starts `rally echo --port 0 --host 127.0.0.1 [FLAGS]` and reads the port from its readiness line. */
export async function startRallyEcho(flags: string[] = []): Promise<RallyEcho> {
  const child = rallyCli(['echo', '--port', '0', '--host', '127.0.0.1', ...flags])
  try {
    const found = await child.waitForLine(
      (line) => {
        const match = /^listening on (ws:\/\/([^\s]+):(\d+))$/.exec(line)
        return match === null ? undefined : { line, url: match[1]!, port: Number(match[3]) }
      },
      20_000,
      'the "listening on ws://HOST:PORT" line',
    )
    return { child, ...found }
  } catch (error) {
    await child.kill()
    throw error
  }
}

/** One JSON object per line, as the Python peers print them. */
export type Report = Record<string, unknown>

export interface PythonRun {
  exit: Exit
  reports: Report[]
  stderr: string
}

/** Runs test/interop/peers/client.py MODE URL to the end and parses its report lines. */
export async function runPythonClient(mode: string, url: string, ms = 40_000): Promise<PythonRun> {
  const child = new Child(`client.py ${mode}`, PYTHON, [`${PEERS}client.py`, mode, url])
  try {
    const exit = await child.waitForExit(ms)
    return { exit, reports: parseReports(child), stderr: child.stderr }
  } finally {
    await child.kill()
  }
}

export function parseReports(child: Child): Report[] {
  return child.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Report)
}

/** Parses one report line, or undefined (for waitForLine). */
export function reportLine(line: string): Report | undefined {
  if (!line.startsWith('{')) return undefined
  return JSON.parse(line) as Report
}

export interface PythonServer {
  child: Child
  port: number
  url(path?: string): string
  /** The server's report of how the connection to `path` (query included) ended. */
  closedReport(path: string, ms?: number): Promise<Report>
  stop(): Promise<void>
}

/** Starts test/interop/peers/server.py [FLAGS] and reads its port. */
export async function startPythonServer(flags: string[] = []): Promise<PythonServer> {
  const child = new Child('server.py', PYTHON, [`${PEERS}server.py`, ...flags])
  try {
    const port = await child.waitForLine(
      (line) => {
        const report = reportLine(line)
        return typeof report?.port === 'number' ? report.port : undefined
      },
      15_000,
      'the port',
    )
    return {
      child,
      port,
      url: (path = '/') => `ws://127.0.0.1:${port}${path}`,
      closedReport: (path, ms = 5000) =>
        child.waitForLine(
          (line) => {
            const report = reportLine(line)
            return report?.event === 'closed' && report.path === path ? report : undefined
          },
          ms,
          `the server's report that ${path} closed`,
        ),
      async stop() {
        // Closing stdin asks the server to stop; SIGKILL if it does not.
        child.process.stdin!.end()
        await child.waitForExit(5000).catch(() => {})
        await child.kill()
      },
    }
  } catch (error) {
    await child.kill()
    throw error
  }
}

/** The report of `case`, failing with the whole list when it is missing. */
export function caseReport(reports: Report[], name: string): Report {
  const found = reports.find((report) => report.case === name)
  assert.ok(found, `no report for case "${name}" in ${JSON.stringify(reports)}`)
  return found
}
