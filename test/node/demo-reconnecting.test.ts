/**
 * The demo pages' reconnecting WebSocket (demo/public/reconnecting.js), run in Node with the
 * browser globals it uses (`location`, `WebSocket`) and mocked timers, so that the retry delay
 * passes at once and "no reconnect" is a count, not a wait. Issue 10, bug 7: `stop()` while a
 * retry was pending left the timer running, and the stopped page connected again.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, describe, it, mock } from 'node:test'

/** A stand-in for the browser's WebSocket: records each connection attempt. */
class PageSocket {
  static readonly OPEN = 1
  static created: PageSocket[] = []
  readonly url: string
  readyState = 0
  onopen: (() => void) | undefined
  onmessage: ((event: { data: string }) => void) | undefined
  onclose: (() => void) | undefined

  constructor(url: string) {
    this.url = url
    PageSocket.created.push(this)
  }

  close(): void {
    this.readyState = 3
    this.onclose?.()
  }

  /** The server went away: the browser fires close. */
  drop(): void {
    this.readyState = 3
    this.onclose?.()
  }
}

type Connect = (path: string, options?: Record<string, unknown>) => { stop(): void }

const globals = globalThis as Record<string, unknown>
let connect: Connect
/** Longest retry delay the script uses (10 s at most, with jitter below it). */
const LONGEST_RETRY_MS = 10_000

before(async () => {
  globals.location = { protocol: 'http:', host: '127.0.0.1:3000' }
  globals.WebSocket = PageSocket
  // @ts-expect-error a browser script without type declarations
  ;({ connect } = (await import('../../demo/public/reconnecting.js')) as { connect: Connect })
})

after(() => {
  delete globals.location
  delete globals.WebSocket
})

beforeEach(() => {
  PageSocket.created = []
  mock.timers.enable({ apis: ['setTimeout'] })
})

afterEach(() => mock.timers.reset())

describe('demo/public/reconnecting.js', () => {
  it('reconnects after the connection drops (the retry path this test relies on)', () => {
    connect('/chat')
    assert.equal(PageSocket.created.length, 1)
    assert.equal(PageSocket.created[0]!.url, 'ws://127.0.0.1:3000/chat')
    PageSocket.created[0]!.drop()
    mock.timers.tick(LONGEST_RETRY_MS)
    assert.equal(PageSocket.created.length, 2)
  })

  it('stop() while a retry is pending: the page never connects again', () => {
    const connection = connect('/chat')
    PageSocket.created[0]!.drop()
    connection.stop()
    mock.timers.tick(LONGEST_RETRY_MS * 2)
    assert.equal(PageSocket.created.length, 1)
  })
})
