/**
 * Recovery cost of the real-time layer (issue 12): a client that missed 1,000 publications gets
 * them back in one round trip. Against the realtime bench server (bench/servers/realtime.ts), from
 * this process, over Rally's WHATWG WebSocket client speaking rally.v1 as any plain client would:
 *
 * 1. a client subscribes to a fresh `recovery:N` channel (history on), notes `{offset, epoch}`
 *    and leaves;
 * 2. 1,000 publications of 64 B are made on it through the server's `/pub` (realtime.publish),
 *    and a watcher subscribed to the channel confirms that all of them were published;
 * 3. a new client connects, then subscribes with `since` — timed from sending that subscribe to
 *    its reply, counting every message that arrived in between.
 */
import { performance } from 'node:perf_hooks'
import { WebSocket } from '../src/client/websocket.js'
import type { RecoveryFigures, Sample } from './measure.js'
import type { RunningServer } from './processes.js'

const MISSED = 1000
const TIMEOUT_MS = 30_000

/** One WebSocket with its messages queued, so that a step can wait for the next one. */
class Peer {
  private readonly queue: string[] = []
  private waiter: ((text: string) => void) | undefined
  private failure: Error | undefined
  /** Every message received, replies and pushes alike. */
  received = 0

  private constructor(readonly socket: WebSocket) {
    socket.addEventListener('message', (event) => {
      this.received++
      const text = String((event as MessageEvent).data)
      const waiter = this.waiter
      this.waiter = undefined
      if (waiter !== undefined) waiter(text)
      else this.queue.push(text)
    })
    socket.addEventListener('close', () => {
      this.failure ??= new Error('the realtime server closed the connection')
    })
  }

  static open(url: string, protocol?: string): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = protocol === undefined ? new WebSocket(url) : new WebSocket(url, protocol)
      const peer = new Peer(socket)
      socket.addEventListener('open', () => resolve(peer), { once: true })
      socket.addEventListener('error', () => reject(new Error(`cannot open ${url}`)), { once: true })
    })
  }

  next(): Promise<string> {
    const queued = this.queue.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    if (this.failure !== undefined) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer from the realtime server')), TIMEOUT_MS)
      this.waiter = (text) => {
        clearTimeout(timer)
        resolve(text)
      }
    })
  }

  /** Sends a command and returns its reply, skipping pushes. */
  async command(
    id: number,
    body: Record<string, unknown>,
  ): Promise<{ result?: Record<string, unknown>; error?: unknown }> {
    this.socket.send(JSON.stringify({ id, ...body }))
    for (;;) {
      const envelope = JSON.parse(await this.next()) as {
        id?: number
        result?: Record<string, unknown>
        error?: unknown
      }
      if (envelope.id !== id) continue
      if (envelope.error !== undefined)
        throw new Error(`rally.v1 ${String(body.cmd)}: ${JSON.stringify(envelope.error)}`)
      return envelope
    }
  }

  close(): void {
    this.socket.close()
  }
}

async function connected(base: string): Promise<Peer> {
  const peer = await Peer.open(`${base}/sub`, 'rally.v1')
  await peer.command(1, { cmd: 'connect', version: 1 })
  return peer
}

export async function measureRecovery(server: RunningServer, rep: number): Promise<Sample> {
  const base = `ws://127.0.0.1:${server.port}`
  // A fresh channel per repetition: each starts with an empty history.
  const channel = `recovery:${rep}-${Date.now()}`
  const first = await connected(base)
  const position = (await first.command(2, { cmd: 'subscribe', channel })).result as {
    offset: number
    epoch: string
  }
  first.close()

  const watcher = await connected(base)
  await watcher.command(2, { cmd: 'subscribe', channel })
  const publisher = await Peer.open(`${base}/pub?channel=${encodeURIComponent(channel)}`)
  const payload = 'p'.repeat(64)
  for (let i = 0; i < MISSED; i++) publisher.socket.send(payload)
  let seen = 0
  while (seen < MISSED) {
    const envelope = JSON.parse(await watcher.next()) as { push?: string }
    if (envelope.push === 'pub') seen++
  }
  publisher.close()
  watcher.close()

  const again = await connected(base)
  const before = again.received
  const started = performance.now()
  again.socket.send(JSON.stringify({ id: 2, cmd: 'subscribe', channel, since: position }))
  let reply: string
  for (;;) {
    reply = await again.next()
    if ((JSON.parse(reply) as { id?: number }).id === 2) break
  }
  const micros = (performance.now() - started) * 1000
  const frames = again.received - before
  again.close()
  const result =
    (JSON.parse(reply) as { result?: { recovered?: boolean; publications?: unknown[] } }).result ?? {}
  const figures: RecoveryFigures = {
    missed: MISSED,
    publications: result.publications?.length ?? 0,
    recovered: result.recovered === true,
    frames,
    replyBytes: Buffer.byteLength(reply),
  }
  const warnings: string[] = []
  if (!figures.recovered) warnings.push('the subscribe was not recovered')
  if (figures.publications !== MISSED)
    warnings.push(`${figures.publications} of ${MISSED} publications recovered`)
  return {
    rep,
    headline: micros,
    perCpu: Number.NaN,
    perSecond: Number.NaN,
    p50: micros,
    p99: Number.NaN,
    serverCpuUtil: Number.NaN,
    loadgenCpuUtil: Number.NaN,
    warnings,
    recovery: figures,
  }
}
