#!/usr/bin/env node
/**
 * The `rally` command. Bad flags exit 2 with a one-line reason; `--help` everywhere.
 */
import { readFileSync } from 'node:fs'
import { UsageError } from './args.js'
import { BENCH_HELP, runBench } from './bench.js'
import { CONNECT_HELP, runConnect } from './connect.js'
import { DEMO_HELP, runDemo } from './demo.js'
import { ECHO_HELP, runEcho } from './echo.js'
import { RELAY_HELP, runRelay } from './relay.js'

const HELP = `Usage: rally <command> [options]

Commands:
  demo      the demo app: chat, live dashboard, /realtime echo (http://localhost:3000)
  echo      echo server, a test peer for other WebSocket implementations
  relay     pub/sub relay: the URL path is the topic
  connect   interactive client: stdin lines out, messages in
  bench     the server benchmarks next to ws, as npm run bench (from a clone of the repository)

Run "rally <command> --help" for a command's options; "rally --version" prints the version.`

/** The version of the installed package: dist/cli/main.js (or src/cli/main.ts) is two levels down. */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
  return (manifest as { version: string }).version
}

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<void>; help: string }> = {
  demo: { run: runDemo, help: DEMO_HELP },
  echo: { run: runEcho, help: ECHO_HELP },
  relay: { run: runRelay, help: RELAY_HELP },
  connect: { run: runConnect, help: CONNECT_HELP },
  bench: { run: runBench, help: BENCH_HELP },
}

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(HELP)
    return
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    console.log(packageVersion())
    return
  }
  const command = COMMANDS[name]
  if (command === undefined) throw new UsageError(`unknown command "${name}" (try: rally --help)`)
  await command.run(rest)
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    console.error(`rally: ${error.message}`)
    process.exit(2)
  }
  console.error(error)
  process.exit(1)
})
