/**
 * Flag parsing shared by the subcommands: unknown or malformed flags exit 2 with one line.
 */
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
  try {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals })
    return { values: values as Record<string, string | boolean | string[] | undefined>, positionals }
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split('\n')[0]! : String(error))
  }
}

export function parsePort(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port must be 0-65535, got "${value}"`)
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
