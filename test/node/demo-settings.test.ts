/**
 * The demo's settings (flags over environment over defaults, each bad value refused with what is
 * wrong and where it came from), its JSON-line logger, and `rally demo`'s --help and exit 2.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createLogger, errorFields } from '../../src/demo/logging.js'
import { demoSettings, redactUrl, SettingsError } from '../../src/demo/settings.js'
import { rallyCli } from '../interop/helpers.js'

describe('demoSettings', () => {
  it('defaults: port 3000 on 127.0.0.1, the in-memory bus, level info', () => {
    assert.deepEqual(demoSettings({}, {}), {
      port: 3000,
      host: '127.0.0.1',
      busUrl: undefined,
      logLevel: 'info',
    })
  })

  it('reads the environment: PORT, HOST, REDIS_URL or NATS_URL, RALLY_LOG_LEVEL before LOG_LEVEL', () => {
    assert.deepEqual(
      demoSettings(
        {},
        {
          PORT: '8080',
          HOST: '0.0.0.0',
          REDIS_URL: 'redis://cache:6379',
          LOG_LEVEL: 'debug',
          RALLY_LOG_LEVEL: 'WARN',
        },
      ),
      { port: 8080, host: '0.0.0.0', busUrl: 'redis://cache:6379', logLevel: 'warn' },
    )
    assert.equal(demoSettings({}, { NATS_URL: 'nats://broker:4222' }).busUrl, 'nats://broker:4222')
    assert.equal(demoSettings({}, { LOG_LEVEL: 'error' }).logLevel, 'error')
    // Set but empty counts as unset (a compose file's `REDIS_URL=`).
    assert.equal(demoSettings({}, { REDIS_URL: '', PORT: ' ' }).busUrl, undefined)
  })

  it('flags win over the environment', () => {
    const settings = demoSettings(
      { port: '0', host: '::1', bus: 'nats://other:4222', logLevel: 'silent' },
      { PORT: '8080', HOST: '0.0.0.0', REDIS_URL: 'redis://cache:6379', RALLY_LOG_LEVEL: 'debug' },
    )
    assert.deepEqual(settings, { port: 0, host: '::1', busUrl: 'nats://other:4222', logLevel: 'silent' })
    // --bus settles REDIS_URL and NATS_URL both being set.
    assert.equal(
      demoSettings({ bus: 'redis://a:1' }, { REDIS_URL: 'redis://b:2', NATS_URL: 'nats://c:3' }).busUrl,
      'redis://a:1',
    )
  })

  it('refuses bad values naming the flag or variable they came from', () => {
    const refused = (
      flags: Parameters<typeof demoSettings>[0],
      env: Record<string, string>,
      message: RegExp,
    ) =>
      assert.throws(
        () => demoSettings(flags, env),
        (error: unknown) => {
          assert.ok(error instanceof SettingsError)
          assert.match(error.message, message)
          return true
        },
      )
    refused({}, { PORT: '70000' }, /^PORT must be a whole number from 0 to 65535 .*got "70000"/)
    refused({ port: 'x' }, {}, /^--port must be a whole number/)
    refused(
      {},
      { REDIS_URL: 'localhost:6379' },
      /^REDIS_URL must be a redis:\/\/, rediss:\/\/, nats:\/\/ or tls:\/\/ \(NATS over TLS\) URL/,
    )
    refused({}, { NATS_URL: 'not a url' }, /^NATS_URL is not a URL/)
    refused({ bus: 'http://broker' }, {}, /^--bus must be a redis:\/\//)
    refused({}, { REDIS_URL: 'redis://a', NATS_URL: 'nats://b' }, /both set: choose one with --bus/)
    refused(
      {},
      { LOG_LEVEL: 'loud' },
      /^LOG_LEVEL must be one of debug, info, warn, error, silent, got "loud"/,
    )
    refused({ logLevel: 'trace' }, {}, /^--log-level must be one of/)
  })

  it('redactUrl hides a password', () => {
    assert.equal(redactUrl('redis://user:secret@cache:6379/0'), 'redis://user:***@cache:6379/0')
    assert.equal(redactUrl('nats://broker:4222'), 'nats://broker:4222')
  })
})

describe('the JSON-line logger', () => {
  it('writes one JSON object per event at or above its level, time, level and event first', () => {
    const lines: string[] = []
    const log = createLogger({ level: 'warn', write: (line) => lines.push(line) })
    log.debug('hidden')
    log.info('hidden too')
    log.warn('bus-error', { attempt: 2 })
    log.error('crash', { level: 'not this one', event: 'nor this' })
    assert.equal(lines.length, 2)
    for (const line of lines) assert.ok(!line.includes('\n'))
    const [warn, error] = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
    assert.deepEqual(Object.keys(warn!), ['time', 'level', 'event', 'attempt'])
    assert.equal(warn!.level, 'warn')
    assert.equal(warn!.attempt, 2)
    // The event's own fields cannot overwrite the record's.
    assert.equal(error!.level, 'error')
    assert.equal(error!.event, 'crash')
    assert.ok(!Number.isNaN(Date.parse(String(warn!.time))))
  })

  it('silent writes nothing; a field JSON cannot carry does not lose the event', () => {
    const lines: string[] = []
    createLogger({ level: 'silent', write: (line) => lines.push(line) }).error('nothing')
    assert.equal(lines.length, 0)
    const log = createLogger({ level: 'debug', write: (line) => lines.push(line) })
    log.info('odd', { big: 10n })
    const record = JSON.parse(lines[0]!) as Record<string, unknown>
    assert.equal(record.event, 'odd')
    assert.deepEqual(record.fields, ['big'])
  })

  it('errorFields keeps what JSON.stringify would drop', () => {
    const error = Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })
    const fields = errorFields(error)
    assert.equal(fields.error, 'refused')
    assert.equal(fields.code, 'ECONNREFUSED')
    assert.match(String(fields.stack), /refused/)
    assert.deepEqual(errorFields('plain'), { error: 'plain' })
  })
})

describe('rally demo', () => {
  it('--help shows every setting with its flag and environment variable', async () => {
    const cli = rallyCli(['demo', '--help'])
    const exit = await cli.waitForExit(20_000)
    assert.deepEqual(exit, { code: 0, signal: null }, cli.stderr)
    for (const text of [
      '--port',
      'PORT',
      '--host',
      'HOST',
      '--bus',
      'REDIS_URL',
      'NATS_URL',
      '--log-level',
      'RALLY_LOG_LEVEL',
      'LOG_LEVEL',
      '/healthz',
      '/metrics',
    ])
      assert.ok(cli.stdout.includes(text), `--help mentions ${text}`)
  })

  it('exits 2 on a log level it does not know, saying which', async () => {
    const cli = rallyCli(['demo', '--log-level', 'loud', '--port', '0'])
    const exit = await cli.waitForExit(20_000)
    assert.deepEqual(exit, { code: 2, signal: null }, cli.stderr)
    assert.equal(
      cli.stderr,
      'rally: --log-level must be one of debug, info, warn, error, silent, got "loud"\n',
    )
  })
})
