/**
 * What every server under test shares with the runner (bench/run.ts):
 *
 * - arguments: `--deflate off|fair|default|takeover` (permessage-deflate settings, see each server;
 *   `takeover`: context takeover both ways),
 *   `--broadcast loop|prepared` (ws only: how `/pub` fans out);
 * - routes by request path: `/pub` publishes each message it receives to every `/sub` connection;
 *   `/sub` only receives; any other path echoes (text as text, binary as binary);
 * - readiness: prints `port N` on stdout once listening on 127.0.0.1;
 * - source-mapped stack traces off (see below);
 * - control on stdin, one command a line: `gc` runs a full garbage collection (the runner starts
 *   servers with --expose-gc) and answers `gc done`; `exit` exits. When stdin ends (the runner is
 *   gone, whatever the reason) the server exits too, so no server outlives a run.
 */
// tsx turns on source-mapped stack traces. Node reads `error.stack` of every socket error (an
// ECONNRESET when the load generator resets a connection), and mapping it through source maps
// costs several percent of a handshake — a cost of running TypeScript through tsx, not of any
// server. Off, for every server alike.
process.setSourceMapsEnabled(false)

export type DeflateMode = 'off' | 'fair' | 'default' | 'takeover'
export type BroadcastMode = 'loop' | 'prepared'

export interface ServerArgs {
  deflate: DeflateMode
  broadcast: BroadcastMode
}

export const TOPIC = 'bench'

export function parseServerArgs(argv: string[] = process.argv.slice(2)): ServerArgs {
  const args: ServerArgs = { deflate: 'off', broadcast: 'loop' }
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]
    const value = argv[i + 1]
    if (
      name === '--deflate' &&
      (value === 'off' || value === 'fair' || value === 'default' || value === 'takeover')
    ) {
      args.deflate = value
      i++
    } else if (name === '--broadcast' && (value === 'loop' || value === 'prepared')) {
      args.broadcast = value
      i++
    } else {
      console.error(`bad argument: ${name} ${value ?? ''}`)
      process.exit(2)
    }
  }
  return args
}

/** Announces the port and starts listening for commands on stdin. */
export function announce(
  port: number,
  onExit: () => void = () => process.exit(0),
  // Node's full GC (the runner starts Node servers with --expose-gc); Bun passes its own.
  collect: () => void = () => {
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    gc?.()
  },
): void {
  let pending = ''
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (chunk: string) => {
    pending += chunk
    let newline = pending.indexOf('\n')
    while (newline !== -1) {
      const command = pending.slice(0, newline).trim()
      pending = pending.slice(newline + 1)
      if (command === 'gc') {
        collect()
        process.stdout.write('gc done\n')
      } else if (command === 'exit') {
        onExit()
      }
      newline = pending.indexOf('\n')
    }
  })
  process.stdin.on('end', onExit)
  process.once('SIGTERM', onExit)
  process.once('SIGINT', onExit)
  process.stdout.write(`port ${port}\n`)
}
