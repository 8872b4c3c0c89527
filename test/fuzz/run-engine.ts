/** Runs the fuzzing engine in a child process, for the tests (its coverage session and watchdog are process-wide). */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ENGINE = fileURLToPath(new URL('./engine.ts', import.meta.url))

export interface EngineRun {
  code: number | null
  signal: NodeJS.Signals | null
  output: string
}

export function runEngine(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<EngineRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ENGINE, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text))
    child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, output }))
  })
}
