/**
 * Flag parsing shared by the subcommands: unknown or malformed flags exit 2 with one line.
 */

import type { AddressInfo } from 'node:net'
import { type ParseArgsConfig, parseArgs } from 'node:util'

export class UsageError extends Error {
  override readonly name = 'UsageError'
}

type Options = NonNullable<ParseArgsConfig['options']>

export function parseFlags<T extends Options>(
  argv: string[],
  options: T,
  allowPositionals = false,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  // parseArgs takes "--port -1" for a missing value followed by an unknown flag "-1"; as
  // "--port=-1" it reaches the option's own check, which says what is wrong with the number.
  const joined: string[] = []
  for (const arg of argv) {
    const previous = joined.at(-1)
    if (/^-\d/.test(arg) && previous !== undefined && isStringOption(options, previous))
      joined[joined.length - 1] = `${previous}=${arg}`
    else joined.push(arg)
  }
  try {
    const { values, positionals } = parseArgs({ args: joined, options, strict: true, allowPositionals })
    return { values: values as Record<string, string | boolean | string[] | undefined>, positionals }
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split('\n')[0]! : String(error))
  }
}

/** True for `--name` (not `--name=value`) when `name` is a string option. */
function isStringOption(options: Options, arg: string): boolean {
  if (!arg.startsWith('--') || arg.includes('=')) return false
  return options[arg.slice(2)]?.type === 'string'
}

export function parsePort(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const port = Number(value)
  if (value.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(
      `--port must be a whole number from 0 to 65535 (0 picks a free port), got "${value}"`,
    )
  return port
}

export function parseSize(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const size = Number(value)
  if (!Number.isSafeInteger(size) || size <= 0)
    throw new UsageError(`--${name} must be a positive number of bytes, got "${value}"`)
  return size
}

/**
 * SIGINT and SIGTERM run `shutdown` (which closes every connection with 1001) and exit 0.
 * Installed before a server prints its readiness line, so that no signal finds it unprepared.
 */
export function exitOnSignal(shutdown: () => Promise<unknown>): void {
  const onSignal = (): void => {
    shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error)
        process.exit(1)
      },
    )
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
}

/** What a server subcommand (`echo`, `relay`) reads from its flags. */
export interface ServerCommandFlags {
  values: Record<string, string | boolean | string[] | undefined>
  host: string
  port: number
}

/**
 * The flags every server subcommand shares (`--host`, default 127.0.0.1; `--port`; `--help`)
 * plus its own `extra` ones. Undefined when `--help` was given: the help is printed, nothing runs.
 */
export function parseServerCommand(
  argv: string[],
  help: string,
  defaultPort: number,
  extra: Options = {},
): ServerCommandFlags | undefined {
  const { values } = parseFlags(argv, {
    host: { type: 'string' },
    port: { type: 'string' },
    ...extra,
    help: { type: 'boolean', short: 'h' },
  })
  if (values.help) {
    console.log(help)
    return undefined
  }
  const host = (values.host as string | undefined) ?? '127.0.0.1'
  return { values, host, port: parsePort(values.port as string | undefined, defaultPort) }
}

/**
 * Readies `server` and prints "listening on SCHEME://HOST:PORT" — the line scripts and tests wait
 * for. The signal handlers go in first: whoever reads that line may signal at once.
 */
export async function announceWhenListening(
  server: { ready(): Promise<unknown>; close(): Promise<unknown>; address(): AddressInfo | undefined },
  scheme: 'ws' | 'wss',
): Promise<void> {
  exitOnSignal(() => server.close())
  await server.ready()
  const address = server.address()!
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  console.log(`listening on ${scheme}://${shownHost}:${address.port}`)
}
