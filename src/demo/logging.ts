/**
 * The demo's structured logs: one JSON object per line, one line per event, so that a log
 * collector (journald, Docker, Loki, CloudWatch…) can filter on fields instead of parsing prose.
 *
 *   {"time":"2026-12-05T06:00:00.000Z","level":"info","event":"connect","client":"…","transport":"sse"}
 *
 * The level comes from `--log-level`, else RALLY_LOG_LEVEL, else LOG_LEVEL (settings.ts); events
 * below it are not written at all.
 */

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

export type LogFields = Record<string, unknown>

export interface Logger {
  readonly level: LogLevel
  debug(event: string, fields?: LogFields): void
  info(event: string, fields?: LogFields): void
  warn(event: string, fields?: LogFields): void
  error(event: string, fields?: LogFields): void
  /** Whether an event of `level` would be written (to skip building costly fields). */
  enabled(level: Exclude<LogLevel, 'silent'>): boolean
}

export interface LoggerOptions {
  level?: LogLevel
  /** Receives each line without its newline. Default: written to stdout. */
  write?: (line: string) => void
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value)
}

/** An Error as JSON fields: JSON.stringify would give `{}` (its fields are not enumerable). */
export function errorFields(error: unknown): LogFields {
  if (!(error instanceof Error)) return { error: String(error) }
  const fields: LogFields = { error: error.message, errorName: error.name }
  const code = (error as NodeJS.ErrnoException).code
  if (code !== undefined) fields.code = code
  if (error.stack !== undefined) fields.stack = error.stack
  return fields
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info'
  const threshold = RANK[level]
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`))
  const enabled = (at: Exclude<LogLevel, 'silent'>) => RANK[at] >= threshold
  const log = (at: Exclude<LogLevel, 'silent'>) => (event: string, fields?: LogFields) => {
    if (!enabled(at)) return
    // time, level and event first, so a human reading the raw lines sees them at once; the
    // event's own fields cannot overwrite them.
    const record: LogFields = { time: new Date().toISOString(), level: at, event }
    if (fields !== undefined)
      for (const [key, value] of Object.entries(fields)) if (!(key in record)) record[key] = value
    let line: string
    try {
      line = JSON.stringify(record)
    } catch (error) {
      // A field that JSON cannot carry (a cycle, a BigInt) must not lose the event itself.
      line = JSON.stringify({ time: record.time, level: at, event, ...fieldsLost(fields, error) })
    }
    write(line)
  }
  return {
    level,
    enabled,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
  }
}

function fieldsLost(fields: LogFields | undefined, error: unknown): LogFields {
  return { fields: Object.keys(fields ?? {}), fieldsError: String(error) }
}
