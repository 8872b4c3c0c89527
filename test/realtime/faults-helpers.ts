/**
 * The harness of the fault tests: a realtime server behind the fault proxy, a crowd of
 * RallyClients subscribed through it, each checking its own stream as it arrives (a publication
 * whose number is not the previous one plus one is a gap or a duplicate, recorded at once), and
 * a publisher sending numbered messages from the server side.
 */
import { WebSocket } from '../../src/index.js'
import { RallyClient, type Subscription } from '../../src/realtime/client/index.js'
import { createRealtime, type Realtime } from '../../src/realtime/index.js'
import { FaultProxy } from '../support/fault-proxy.js'

export const CHANNEL = 'feed:main'

export interface Harness {
  realtime: Realtime
  proxy: FaultProxy
  clients: Watched[]
  close(): Promise<void>
}

/** One client and what it saw. */
export interface Watched {
  client: RallyClient
  subscription: Subscription
  /** The numbers received, in order. */
  received: number[]
  /** Every gap or duplicate, described. */
  violations: string[]
  /** subscribed events, in order. */
  subscribed: { recovered: boolean; wasRecovering: boolean }[]
  disconnects: number
  /** The code of each disconnection, in order (4002: the client's heartbeat judged the path dead). */
  disconnectCodes: number[]
  lastDisconnectReason: string
}

export interface HarnessOptions {
  clients: number
  historySize: number
  /** Server heartbeat interval and timeout (ms). */
  heartbeat: { interval: number; timeout: number }
}

export async function startHarness(options: HarnessOptions): Promise<Harness> {
  const realtime = createRealtime({
    channels: { 'feed:*': { history: { size: options.historySize, ttl: 600_000 }, presence: true } },
    heartbeat: options.heartbeat,
    // A client away for a few seconds on a loaded machine misses more than the default 1000
    // publications a recovery returns; the tests that expect full recovery need them all.
    limits: { historyLimit: 100_000 },
    onError: () => {},
  })
  const server = await realtime.listen({ port: 0, host: '127.0.0.1' })
  const proxy = await FaultProxy.start({ targetPort: server.port! })
  const url = `ws://127.0.0.1:${proxy.port}/`
  const clients: Watched[] = []
  for (let i = 0; i < options.clients; i++) clients.push(watch(url, options.heartbeat.interval))
  return {
    realtime,
    proxy,
    clients,
    async close() {
      for (const { client } of clients) client.close()
      await proxy.close()
      await realtime.close()
    },
  }
}

function watch(url: string, ping: number): Watched {
  const client = new RallyClient(url, {
    WebSocket,
    // Short delays keep the test quick; the jitter spreads the crowd's reconnections.
    reconnect: { minDelay: 50, maxDelay: 1000 },
    // Two pings and a margin, as the protocol's default, scaled to the test's short interval.
    silenceLimit: () => 2 * ping + 500,
    // The default: 200 handshakes at once on a loaded 2-core machine take seconds, and a shorter
    // timeout turns that into a storm of retries. A connection opened into a black hole lost its
    // handshake for good and waits this out after the path is healed.
    connectTimeout: 10_000,
    timeout: 30_000,
  })
  const subscription = client.channel(CHANNEL)
  const watched: Watched = {
    client,
    subscription,
    received: [],
    violations: [],
    subscribed: [],
    disconnects: 0,
    disconnectCodes: [],
    lastDisconnectReason: '',
  }
  let allowGap = false
  subscription.on('subscribed', ({ recovered, wasRecovering }) => {
    watched.subscribed.push({ recovered, wasRecovering })
    // recovered:false is the explicit signal that a gap follows: the app would refetch here.
    allowGap = !recovered
  })
  subscription.on('publication', (pub) => {
    const value = pub.data as number
    const last = watched.received.at(-1)
    if (last !== undefined && value !== last + 1 && !(allowGap && value > last)) {
      watched.violations.push(`after ${last} came ${value} (offset ${pub.offset})`)
    }
    allowGap = false
    watched.received.push(value)
  })
  client.on('disconnected', ({ code, reason }) => {
    watched.disconnects++
    watched.disconnectCodes.push(code)
    watched.lastDisconnectReason = `${code} ${reason}`
  })
  client.connect()
  return watched
}

/** Resolves once `condition` holds, checked every few ms; rejects after `ms` naming `what`. */
export async function eventually(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** How many clients are in each connection/subscription state, and their last disconnect reasons. */
export function describeStates(clients: readonly Watched[]): string {
  const counts = new Map<string, number>()
  for (const w of clients) {
    const key = `${w.client.state}/${w.subscription.state} (last: ${w.lastDisconnectReason || 'none'})`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return [...counts].map(([key, count]) => `${count} × ${key}`).join('\n')
}

/** Waits until every client is connected and subscribed; the error says who is not. */
export function allResubscribed(clients: readonly Watched[], ms: number, what: string): Promise<void> {
  return eventually(() => allSubscribed(clients), ms, what).catch((error: Error) => {
    throw new Error(`${error.message}\n${describeStates(clients)}`)
  })
}

export function allSubscribed(clients: readonly Watched[]): boolean {
  return clients.every(
    ({ client, subscription }) => client.state === 'connected' && subscription.state === 'subscribed',
  )
}

/**
 * Publishes 1..count from the server side, a few at a time with a pause between batches, so that
 * publications keep flowing while faults are injected. Resolves once all are published.
 */
export async function publishNumbers(
  realtime: Realtime,
  count: number,
  options: { batch: number; pauseMs: number; from?: number },
): Promise<void> {
  const from = options.from ?? 1
  for (let n = from; n < from + count; n++) {
    await realtime.publish(CHANNEL, n)
    if ((n - from + 1) % options.batch === 0)
      await new Promise((resolve) => setTimeout(resolve, options.pauseMs))
  }
}

/** Waits until every client has received `more` publications beyond the most any had now. */
export function allAdvance(clients: readonly Watched[], more: number, what: string): Promise<void> {
  const target = Math.max(...clients.map((w) => w.received.length)) + more
  return eventually(() => clients.every((w) => w.received.length >= target), 20_000, what)
}

/** A summary of what went wrong, for assertion messages. */
export function describeFailures(clients: readonly Watched[], expected: number): string {
  const bad = clients.filter(
    (w) => w.violations.length > 0 || w.received.length !== expected || w.received.at(-1) !== expected,
  )
  return bad
    .slice(0, 5)
    .map(
      (w) =>
        `${w.client.clientId}: ${w.received.length} received, last ${w.received.at(-1)}, violations ${w.violations.slice(0, 3).join('; ')}`,
    )
    .join('\n')
}
