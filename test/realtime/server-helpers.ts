/**
 * Raw rally.v1 clients for the server tests: Rally's WHATWG WebSocket speaking the JSON protocol
 * by hand (no RallyClient), so that the tests pin the wire format itself. Every wait is bounded.
 */

import { WebSocket } from '../../src/index.js'
import { createRealtime, Realtime, type RealtimeOptions } from '../../src/realtime/index.js'
import { within } from '../adapters/helpers.js'

export { within }

export type Envelope = Record<string, unknown> & {
  id?: number
  push?: string
  result?: Record<string, unknown>
  error?: { code: number; message: string; field?: string; temporary?: boolean }
}

/** A connection speaking the raw protocol; every envelope it receives is kept in order. */
export class RawClient {
  readonly ws: WebSocket
  readonly received: Envelope[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<{ code: number; reason: string }>
  private nextId = 1
  private waiters: { match: (e: Envelope) => boolean; resolve: (e: Envelope) => void }[] = []
  /** Answer `ping` pushes with `pong` (a live client); false simulates a dead path. */
  autoPong = true

  constructor(url: string, protocols: string[] = ['rally.v1']) {
    this.ws = new WebSocket(url, protocols)
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener('open', () => resolve(), { once: true })
      this.ws.addEventListener('close', () => reject(new Error('closed before open')), { once: true })
    })
    this.opened.catch(() => {})
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener('close', (event) => {
        const close = event as unknown as { code: number; reason: string }
        resolve({ code: close.code, reason: close.reason })
      })
    })
    this.ws.addEventListener('message', (event) => {
      const envelope = JSON.parse(String((event as MessageEvent).data)) as Envelope
      if (envelope.push === 'ping' && this.autoPong) this.sendRaw('{"cmd":"pong"}')
      this.received.push(envelope)
      for (const waiter of [...this.waiters]) {
        if (waiter.match(envelope)) {
          this.waiters.splice(this.waiters.indexOf(waiter), 1)
          waiter.resolve(envelope)
        }
      }
    })
  }

  /** The close code and reason, bounded. */
  whenClosed(ms = 3000): Promise<{ code: number; reason: string }> {
    return within(this.closed, ms, 'the connection to close')
  }

  sendRaw(text: string): void {
    this.ws.send(text)
  }

  /** Sends a command with the next id and resolves with its reply. */
  async request(cmd: string, fields: Record<string, unknown> = {}, ms = 3000): Promise<Envelope> {
    const id = this.nextId++
    const reply = this.next((e) => e.id === id, ms, `reply to ${cmd} #${id}`)
    this.sendRaw(JSON.stringify({ id, cmd, ...fields }))
    return reply
  }

  /** Sends a command without waiting; returns its id. */
  send(cmd: string, fields: Record<string, unknown> = {}): number {
    const id = this.nextId++
    this.sendRaw(JSON.stringify({ id, cmd, ...fields }))
    return id
  }

  /** The first envelope (already received or coming) that matches. */
  next(match: (e: Envelope) => boolean, ms = 3000, label = 'an envelope'): Promise<Envelope> {
    const seen = this.received.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return within(new Promise<Envelope>((resolve) => this.waiters.push({ match, resolve })), ms, label)
  }

  /** Waits until `count` envelopes match, and returns them. */
  async collect(match: (e: Envelope) => boolean, count: number, ms = 3000): Promise<Envelope[]> {
    const deadline = Date.now() + ms
    while (this.received.filter(match).length < count) {
      const left = deadline - Date.now()
      if (left <= 0)
        throw new Error(
          `timed out waiting for ${count} envelopes, have ${this.received.filter(match).length}`,
        )
      await within(
        new Promise<Envelope>((resolve) => this.waiters.push({ match, resolve })),
        left,
        `${count} envelopes`,
      ).catch(() => undefined)
    }
    return this.received.filter(match)
  }

  /** Offsets of the `pub` pushes of one channel received so far. */
  pubOffsets(channel: string): number[] {
    return this.received
      .filter((e) => e.push === 'pub' && e.channel === channel)
      .map((e) => e.offset as number)
  }

  async connect(fields: Record<string, unknown> = {}): Promise<Envelope> {
    await this.opened
    return this.request('connect', { version: 1, ...fields })
  }

  close(): void {
    this.ws.close()
  }
}

/** A realtime server on a free port, and the clients a test opens (closed afterwards). */
export class Fixture {
  readonly realtime: Realtime
  url = ''
  private readonly clients: RawClient[] = []

  /** Options (errors of hooks are not printed), or a realtime made by the test itself. */
  constructor(options: RealtimeOptions | Realtime) {
    this.realtime =
      options instanceof Realtime
        ? options
        : createRealtime({ onError: () => {}, ...options } as RealtimeOptions)
  }

  async start(): Promise<this> {
    const server = await this.realtime.listen({ port: 0, host: '127.0.0.1', path: '/rt' })
    this.url = `ws://127.0.0.1:${server.port}/rt`
    return this
  }

  client(protocols?: string[]): RawClient {
    const client = new RawClient(this.url, protocols)
    this.clients.push(client)
    return client
  }

  /** A client that has connected (and had its connect reply). */
  async connected(fields: Record<string, unknown> = {}): Promise<RawClient> {
    const client = this.client()
    const reply = await client.connect(fields)
    if (reply.error !== undefined) throw new Error(`connect refused: ${reply.error.message}`)
    return client
  }

  async stop(): Promise<void> {
    for (const client of this.clients) client.close()
    await this.realtime.close()
  }
}
