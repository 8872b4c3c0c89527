/**
 * The cluster harness: a real broker (test/support/brokers.ts), three Rally nodes as separate
 * processes (node.ts), a round-robin TCP balancer in front (test/support/balancer.ts) and a crowd
 * of RallyClients connected through it, each checking its stream as it arrives: offsets one by
 * one in the same epoch (a repeat or a hole is recorded at once), and each node's numbers one by
 * one. A new epoch is accepted only right after `subscribed` with recovered: false — the explicit
 * signal of lost history — never silently.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { WebSocket } from '../../src/index.js'
import { RallyClient, type Subscription } from '../../src/realtime/client/index.js'
import type { TransportName } from '../../src/realtime/client/transports/index.js'
import { Balancer } from '../support/balancer.js'
import type { Broker } from '../support/brokers.js'
import { type Nginx, startNginx } from '../support/nginx.js'

export const CHANNEL = 'feed:cluster'
/** Where the nodes serve every transport. */
export const REALTIME_PATH = '/realtime'
const NODE_SCRIPT = fileURLToPath(new URL('./node.ts', import.meta.url))
/** How long a node may take to start (tsx compiles the sources on a loaded 2-core machine). */
const NODE_START_MS = 30_000

/** Node processes still running: killed when the test process exits, whatever happened. */
const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export class ClusterNode {
  readonly port: number
  readonly nodeId: string
  private readonly lines: string[] = []
  private readonly waiters = new Set<() => void>()
  private tags = 0

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    port: number,
    nodeId: string,
    buffered: string[],
  ) {
    this.port = port
    this.nodeId = nodeId
    this.lines.push(...buffered)
  }

  static async start(name: string, env: Record<string, string>): Promise<ClusterNode> {
    const child = spawn(process.execPath, ['--import', 'tsx', NODE_SCRIPT], {
      env: { ...process.env, ...env, NODE_NAME: name },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    running.add(child)
    child.once('exit', () => running.delete(child))
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => {
      if (stderr.length < 8192) stderr += chunk.toString()
    })
    let pending = ''
    const lines: string[] = []
    let node: ClusterNode | undefined
    child.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString()
      let newline = pending.indexOf('\n')
      while (newline >= 0) {
        const line = pending.slice(0, newline)
        pending = pending.slice(newline + 1)
        if (node === undefined) lines.push(line)
        else node.receive(line)
        newline = pending.indexOf('\n')
      }
    })
    const ready = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${name} not ready:\n${stderr}`)), NODE_START_MS)
      const check = () => {
        const line = lines.find((l) => l.startsWith('READY '))
        if (line !== undefined) {
          clearTimeout(timer)
          child.stdout!.off('data', check)
          resolve(line)
        }
      }
      child.stdout!.on('data', check)
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`node ${name} exited (${code ?? signal}) before it was ready:\n${stderr}`))
      })
    })
    const [, port, nodeId] = ready.split(' ')
    node = new ClusterNode(
      name,
      child,
      Number(port),
      nodeId!,
      lines.filter((l) => l !== ready),
    )
    return node
  }

  private receive(line: string): void {
    this.lines.push(line)
    for (const waiter of this.waiters) waiter()
  }

  /** Sends a command and waits for its answer line (`<ANSWER> <tag> …`), returning the rest. */
  private async ask(command: string, args: string, answer: string, ms: number): Promise<string> {
    const tag = `t${++this.tags}`
    const prefix = `${answer} ${tag} `
    const result = new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = this.lines.find((l) => l.startsWith(prefix))
        if (line === undefined) return
        this.waiters.delete(check)
        clearTimeout(timer)
        resolve(line.slice(prefix.length))
      }
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        reject(new Error(`node ${this.name}: no answer to ${command} ${args} after ${ms} ms`))
      }, ms)
      this.waiters.add(check)
    })
    this.child.stdin!.write(`${command} ${tag} ${args}\n`)
    return result
  }

  /** Publishes `{ node, n }` for n = from..from+count-1; resolves when all are published. */
  async publish(count: number, batch: number, pauseMs: number, from = 1, ms = 60_000): Promise<void> {
    await this.ask('publish', `${CHANNEL} ${count} ${batch} ${pauseMs} ${from}`, 'DONE', ms)
  }

  /** Starts publishing without waiting (for a node about to be killed). */
  publishAndForget(count: number, batch: number, pauseMs: number, from = 1): void {
    this.publish(count, batch, pauseMs, from).catch(() => {})
  }

  async latest(): Promise<{ offset: number; epoch: string }> {
    const [offset, epoch] = (await this.ask('latest', CHANNEL, 'LATEST', 20_000)).split(' ')
    return { offset: Number(offset), epoch: epoch! }
  }

  /** Sessions connected to this node, its bus's status, and whether it refuses new sessions. */
  async clients(): Promise<{ connected: number; bus: string; refusing: boolean }> {
    const [connected, bus, refusing] = (await this.ask('clients', '', 'CLIENTS', 20_000)).split(' ')
    return { connected: Number(connected), bus: bus!, refusing: refusing === 'yes' }
  }

  async presence(): Promise<string[]> {
    return (JSON.parse(await this.ask('presence', CHANNEL, 'PRESENCE', 20_000)) as string[]).sort()
  }

  /** Counts the publications this node's bus delivers on the channel from now on. */
  async watchBus(): Promise<void> {
    await this.ask('watch', CHANNEL, 'WATCHING', 20_000)
  }

  /** `<count> <last offset@epoch>` delivered by this node's bus since watchBus. */
  async delivered(): Promise<string> {
    if (!this.alive) return 'dead'
    return this.ask('delivered', CHANNEL, 'DELIVERED', 5000).catch((error: Error) => error.message)
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** kill -9: no close frame, no goodbye to the broker; its presence entries must expire. */
  async kill(): Promise<void> {
    if (!this.alive) return
    const exited = once(this.child, 'exit')
    this.child.kill('SIGKILL')
    await exited
  }

  async stop(): Promise<void> {
    if (!this.alive) return
    const exited = once(this.child, 'exit')
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
}

/** One client and what it saw. */
export interface Watched {
  client: RallyClient
  subscription: Subscription
  /** `node:n` of every publication, in order of arrival. */
  received: string[]
  /** The offsets received in the current epoch, and that epoch. */
  offsets: number[]
  epoch: string | undefined
  /** Every repeat, hole or unannounced epoch change, described. */
  violations: string[]
  subscribed: { recovered: boolean; wasRecovering: boolean }[]
  /** Each `unsubscribed` event (code and reason): a subscription the client gave up. */
  unsubscribed: string[]
  disconnects: number
  lastDisconnect: string
  /** Every disconnection's code and reason, in order. */
  disconnections: string[]
}

export function watch(url: string, silenceMs: number, transport: TransportName = 'websocket'): Watched {
  const client = new RallyClient(url, {
    WebSocket,
    transports: [transport],
    // Short delays keep the test quick; the jitter spreads the crowd's reconnections.
    reconnect: { minDelay: 50, maxDelay: 1000 },
    silenceLimit: () => silenceMs,
    connectTimeout: 10_000,
    timeout: 30_000,
  })
  const subscription = client.channel(CHANNEL)
  const w: Watched = {
    client,
    subscription,
    received: [],
    offsets: [],
    epoch: undefined,
    violations: [],
    subscribed: [],
    unsubscribed: [],
    disconnects: 0,
    lastDisconnect: '',
    disconnections: [],
  }
  const lastByNode = new Map<string, number>()
  let announcedLoss = false
  subscription.on('subscribed', ({ recovered, wasRecovering }) => {
    w.subscribed.push({ recovered, wasRecovering })
    // recovered: false is the explicit signal that what follows may not continue what came before.
    if (wasRecovering && !recovered) announcedLoss = true
  })
  subscription.on('publication', (pub) => {
    const { node, n } = pub.data as { node: string; n: number }
    if (w.epoch !== undefined && pub.epoch !== w.epoch) {
      if (!announcedLoss) w.violations.push(`epoch ${w.epoch} → ${pub.epoch} without recovered: false`)
      w.offsets = []
      lastByNode.clear()
    } else if (w.offsets.length > 0) {
      const last = w.offsets.at(-1)!
      if (pub.offset !== last + 1 && !(announcedLoss && pub.offset > last))
        w.violations.push(`offset ${pub.offset} after ${last}`)
    }
    const previous = lastByNode.get(node)
    if (previous !== undefined && n !== previous + 1 && !announcedLoss)
      w.violations.push(`${node}:${n} after ${node}:${previous}`)
    lastByNode.set(node, n)
    announcedLoss = false
    w.epoch = pub.epoch
    w.offsets.push(pub.offset)
    w.received.push(`${node}:${n}`)
  })
  subscription.on('unsubscribed', ({ code, reason }) => w.unsubscribed.push(`${code} ${reason}`))
  client.on('disconnected', ({ code, reason }) => {
    w.disconnects++
    w.lastDisconnect = `${code} ${reason}`
    w.disconnections.push(w.lastDisconnect)
  })
  client.connect()
  return w
}

export interface Cluster {
  broker: Broker
  nodes: ClusterNode[]
  /** What the clients connect through: the test balancer, or nginx. */
  front: Balancer | Nginx
  clients: Watched[]
  close(): Promise<void>
}

export interface ClusterOptions {
  clients: number
  /** The buses' presence expiry (ms): how long a dead node's members may stay. */
  presenceTtl: number
  /** The nodes' ping interval (ms); a client hearing nothing for twice that reconnects. */
  heartbeat: number
  /** The broker URL of some nodes, by name, instead of the broker's (a fault proxy in between). */
  brokerUrls?: Readonly<Record<string, string>>
  /** The nodes' busOutageGrace (ms); default theirs. */
  busOutageGrace?: number
  /** nginx in front (clusterNginxConfig) instead of the test balancer. Default false. */
  nginx?: boolean
  /** The transports of the crowd, client i forced to `transports[i % length]`. Default WebSocket. */
  transports?: readonly TransportName[]
}

/**
 * nginx in front of the nodes (the configuration docs/cluster.md shows): WebSockets and the
 * HTTP transports' opening requests are spread round-robin over every node; every other request
 * of an HTTP session carries `?session=<node>.<id>` and goes to the node that holds the session.
 */
export function clusterNginxConfig(port: number, nodes: readonly { name: string; port: number }[]): string {
  const named = nodes.map((node) => `    ~^${node.name}\\. rally_${node.name};`).join('\n')
  const single = nodes
    .map((node) => `upstream rally_${node.name} { server 127.0.0.1:${node.port}; }`)
    .join('\n')
  const all = nodes.map((node) => `    server 127.0.0.1:${node.port} max_fails=1 fail_timeout=5s;`).join('\n')
  return `map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}

map $arg_session $rally_backend {
${named}
    default rally;
}

upstream rally {
${all}
}
${single}

server {
    listen 127.0.0.1:${port};

    location /realtime {
        proxy_pass http://$rally_backend;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;
        proxy_next_upstream error timeout http_502 http_503;
    }
}
`
}

/** Three nodes on `broker` behind a balancer, `clients` clients spread over them. */
export async function startCluster(
  broker: Broker,
  env: 'REDIS_URL' | 'NATS_URL',
  options: ClusterOptions,
): Promise<Cluster> {
  const nodes: ClusterNode[] = []
  const clients: Watched[] = []
  let front: Balancer | Nginx | undefined
  const close = async () => {
    for (const { client } of clients) client.close()
    if (front instanceof Balancer) await front.close()
    else await front?.stop()
    await Promise.all(nodes.map((node) => node.stop()))
  }
  try {
    const nodeEnv = {
      PRESENCE_TTL: String(options.presenceTtl),
      HEARTBEAT: String(options.heartbeat),
      ...(options.busOutageGrace === undefined ? {} : { BUS_OUTAGE_GRACE: String(options.busOutageGrace) }),
    }
    // One at a time: three tsx compilations at once on two cores take longer than one after another.
    for (const name of ['a', 'b', 'c'])
      nodes.push(
        await ClusterNode.start(name, { ...nodeEnv, [env]: options.brokerUrls?.[name] ?? broker.url }),
      )
    front = options.nginx
      ? await startNginx(({ port }) => clusterNginxConfig(port, nodes))
      : await Balancer.start(nodes.map((node) => node.port))
    const url = `ws://127.0.0.1:${front.port}${REALTIME_PATH}`
    const transports = options.transports ?? ['websocket']
    for (let i = 0; i < options.clients; i++)
      clients.push(watch(url, 2 * options.heartbeat + 1000, transports[i % transports.length]))
  } catch (error) {
    await close()
    throw error
  }
  return { broker, nodes, front, clients, close }
}

/** Resolves once `condition` holds, checked every few ms; rejects after `ms` naming `what`. */
export async function eventually(condition: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what()}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export function allSubscribed(clients: readonly Watched[]): boolean {
  return clients.every(
    ({ client, subscription }) => client.state === 'connected' && subscription.state === 'subscribed',
  )
}

/** How many clients are in each state, with their last disconnection, for failure messages. */
export function describeStates(clients: readonly Watched[]): string {
  const counts = new Map<string, number>()
  for (const w of clients) {
    const key = `${w.client.state}/${w.subscription.state} (last: ${w.lastDisconnect || 'none'}; unsubscribed: ${w.unsubscribed.join(', ') || 'never'})`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return [...counts].map(([key, count]) => `${count} × ${key}`).join('\n')
}

/** The first few clients whose stream is not exactly offsets 1..latest, with what they got. */
export function describeFailures(clients: readonly Watched[], latest: number): string {
  return clients
    .filter((w) => w.violations.length > 0 || w.offsets.at(-1) !== latest)
    .slice(0, 5)
    .map(
      (w) =>
        `${w.client.clientId}: ${w.offsets.length} offsets, last ${w.offsets.at(-1)}, violations ${w.violations.slice(0, 3).join('; ')}`,
    )
    .join('\n')
}
