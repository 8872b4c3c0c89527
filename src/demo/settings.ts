/**
 * The demo's settings, from `rally demo`'s flags first, then the environment, then defaults:
 *
 * | setting   | flag          | environment                     | default        |
 * |-----------|---------------|---------------------------------|----------------|
 * | port      | `--port`      | `PORT`                          | 3000           |
 * | host      | `--host`      | `HOST`                          | 127.0.0.1      |
 * | bus       | `--bus`       | `REDIS_URL`, else `NATS_URL`    | in memory      |
 * | log level | `--log-level` | `RALLY_LOG_LEVEL`, else `LOG_LEVEL` | info       |
 *
 * A bus URL makes the demo one node of a cluster: every node on the same broker shares channels,
 * history and presence. busFromUrl loads the broker's adapter (rallyjs/redis or rallyjs/nats)
 * only then, so its client library stays an optional peer.
 */
import { isLogLevel, LOG_LEVELS, type LogLevel } from './logging.js'

export interface DemoSettings {
  port: number
  host: string
  /** redis://, rediss://, nats:// or tls:// — undefined runs on one process's in-memory bus. */
  busUrl: string | undefined
  logLevel: LogLevel
}

/** The flags `rally demo` reads (strings as given, undefined when absent). */
export interface DemoFlags {
  port?: string
  host?: string
  bus?: string
  logLevel?: string
}

/** A setting given a value the demo cannot use; the CLI prints it and exits 2. */
export class SettingsError extends Error {
  override readonly name = 'SettingsError'
}

type Environment = Readonly<Record<string, string | undefined>>

/** The first of `names` set to a non-empty value, with its name (for error messages). */
function fromEnvironment(env: Environment, ...names: string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]
    if (value !== undefined && value.trim() !== '') return { name, value: value.trim() }
  }
  return undefined
}

/** What busFromUrl (src/pubsub/from-url.ts) connects: Redis, or NATS (tls:// with TLS). */
const BUS_SCHEMES = ['redis:', 'rediss:', 'nats:', 'tls:'] as const

function checkBusUrl(value: string, source: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new SettingsError(`${source} is not a URL: "${value}" (redis://host:6379 or nats://host:4222)`)
  }
  if (!(BUS_SCHEMES as readonly string[]).includes(url.protocol))
    throw new SettingsError(
      `${source} must be a redis://, rediss://, nats:// or tls:// (NATS over TLS) URL, got "${url.protocol}//…"`,
    )
  return value
}

export function demoSettings(flags: DemoFlags, env: Environment = process.env): DemoSettings {
  const portGiven =
    flags.port !== undefined ? { name: '--port', value: flags.port } : fromEnvironment(env, 'PORT')
  let port = 3000
  if (portGiven !== undefined) {
    port = Number(portGiven.value)
    if (portGiven.value.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535)
      throw new SettingsError(
        `${portGiven.name} must be a whole number from 0 to 65535 (0 picks a free port), got "${portGiven.value}"`,
      )
  }

  const host = flags.host ?? fromEnvironment(env, 'HOST')?.value ?? '127.0.0.1'

  let busUrl: string | undefined
  if (flags.bus !== undefined) {
    busUrl = checkBusUrl(flags.bus, '--bus')
  } else {
    const redis = fromEnvironment(env, 'REDIS_URL')
    const nats = fromEnvironment(env, 'NATS_URL')
    // Both set is ambiguous: picking one in silence would leave the operator guessing which.
    if (redis !== undefined && nats !== undefined)
      throw new SettingsError('REDIS_URL and NATS_URL are both set: choose one with --bus <url>')
    const chosen = redis ?? nats
    if (chosen !== undefined) busUrl = checkBusUrl(chosen.value, chosen.name)
  }

  const levelGiven =
    flags.logLevel !== undefined
      ? { name: '--log-level', value: flags.logLevel }
      : fromEnvironment(env, 'RALLY_LOG_LEVEL', 'LOG_LEVEL')
  const level = levelGiven?.value.toLowerCase() ?? 'info'
  if (!isLogLevel(level))
    throw new SettingsError(
      `${levelGiven!.name} must be one of ${LOG_LEVELS.join(', ')}, got "${levelGiven!.value}"`,
    )

  return { port, host, busUrl, logLevel: level }
}

/** The URL without its password, for logs and the console. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value)
    if (url.password !== '') url.password = '***'
    return url.toString()
  } catch {
    return value
  }
}
