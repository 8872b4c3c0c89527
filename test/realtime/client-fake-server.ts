/**
 * A scripted rally.v1 server for the client's own tests: small enough to read at a glance, on
 * Rally's WebSocket server over real sockets, so that the client's behaviour (reconnection,
 * queues, recovery, refusals) is tested apart from the real realtime server. Each test changes
 * its behaviour through the hooks (`onCommand` returning true takes over a command) and reads
 * what the client sent from `commands`.
 */
import { createServer, type RallyServer, type ServerWebSocket } from '../../src/index.js'
import {
  type Command,
  decodeCommand,
  encodePubPush,
  type Pub,
  type RequestCommand,
  SUBPROTOCOL,
} from '../../src/realtime/protocol.js'

export interface FakeConnection {
  readonly ws: ServerWebSocket<undefined>
  readonly client: string
  readonly channels: Set<string>
  connected: boolean
  send(message: unknown): void
  sendText(text: string): void
}

export interface FakeServerOptions {
  /** The ping interval announced in the connect reply; pings are sent only when `sendPings`. */
  ping?: number
  sendPings?: boolean
  /** How many publications each channel's history keeps. Default 1000. */
  historySize?: number
}

export class FakeRealtimeServer {
  readonly connections = new Set<FakeConnection>()
  /** Every command received, with the connection's client id. */
  readonly commands: { client: string; command: Command }[] = []
  /** Per channel: the epoch and every publication (history trimmed to historySize). */
  readonly channels = new Map<string, { epoch: string; offset: number; history: Pub[] }>()
  readonly publishedKeys = new Map<string, { offset: number; epoch: string }>()
  /** Takes over a command: return true when handled. */
  onCommand: ((connection: FakeConnection, command: RequestCommand) => boolean) | undefined
  connectCount = 0
  private server!: RallyServer<undefined>
  private counter = 0
  private readonly listeners = new Set<() => void>()

  private constructor(private readonly options: FakeServerOptions) {}

  static async start(options: FakeServerOptions = {}): Promise<FakeRealtimeServer> {
    const fake = new FakeRealtimeServer(options)
    fake.server = createServer<undefined>({
      port: 0,
      host: '127.0.0.1',
      heartbeat: false,
      protocols: [SUBPROTOCOL],
      open: (ws) => fake.open(ws),
      message: (ws, data) => fake.message(ws, String(data)),
      close: (ws) => fake.closed(ws),
    })
    await fake.server.ready()
    return fake
  }

  get url(): string {
    return `ws://127.0.0.1:${this.server.port}/`
  }

  get port(): number {
    return this.server.port!
  }

  async close(): Promise<void> {
    for (const connection of this.connections) connection.ws.terminate()
    await this.server.close()
  }

  /** Resolves when `condition` holds, checked after every event the fake sees (no polling). */
  until(condition: () => boolean, ms = 5000, what = 'a condition'): Promise<void> {
    if (condition()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!condition()) return
        clearTimeout(timer)
        this.listeners.delete(check)
        resolve()
      }
      const timer = setTimeout(() => {
        this.listeners.delete(check)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
      }, ms)
      this.listeners.add(check)
    })
  }

  /** Commands received with this name. */
  commandsNamed<Name extends Command['cmd']>(name: Name): Extract<Command, { cmd: Name }>[] {
    return this.commands.filter((c) => c.command.cmd === name).map((c) => c.command) as Extract<
      Command,
      { cmd: Name }
    >[]
  }

  /** A server-side publication: appended to history and pushed to subscribers. */
  publish(channel: string, data: unknown): Pub {
    const state = this.channel(channel)
    state.offset++
    const pub: Pub = { channel, offset: state.offset, epoch: state.epoch, data }
    state.history.push(pub)
    const size = this.options.historySize ?? 1000
    if (state.history.length > size) state.history.splice(0, state.history.length - size)
    const text = encodePubPush(channel, pub.offset, pub.epoch, JSON.stringify(data))
    for (const connection of this.connections) {
      if (connection.connected && connection.channels.has(channel)) connection.sendText(text)
    }
    this.notify()
    return pub
  }

  channel(name: string): { epoch: string; offset: number; history: Pub[] } {
    let state = this.channels.get(name)
    if (state === undefined) this.channels.set(name, (state = { epoch: 'e1', offset: 0, history: [] }))
    return state
  }

  sendPing(): void {
    for (const connection of this.connections) if (connection.connected) connection.send({ push: 'ping' })
  }

  private open(ws: ServerWebSocket<undefined>): void {
    const connection: FakeConnection = {
      ws,
      client: `c${++this.counter}`,
      channels: new Set(),
      connected: false,
      send: (message) => ws.send(JSON.stringify(message)),
      sendText: (text) => ws.send(text),
    }
    this.connections.add(connection)
    ;(ws as unknown as { fake: FakeConnection }).fake = connection
    this.notify()
  }

  private closed(ws: ServerWebSocket<undefined>): void {
    this.connections.delete((ws as unknown as { fake: FakeConnection }).fake)
    this.notify()
  }

  private message(ws: ServerWebSocket<undefined>, text: string): void {
    const connection = (ws as unknown as { fake: FakeConnection }).fake
    const decoded = decodeCommand(text)
    if (!decoded.ok) throw new Error(`the client sent a bad command: ${decoded.error.message}: ${text}`)
    const command = decoded.value
    this.commands.push({ client: connection.client, command })
    if (command.cmd !== 'pong' && !(this.onCommand?.(connection, command) ?? false)) {
      this.defaultReply(connection, command)
    }
    this.notify()
  }

  private defaultReply(connection: FakeConnection, command: RequestCommand): void {
    const reply = (result: unknown): void => connection.send({ id: command.id, result })
    switch (command.cmd) {
      case 'connect':
        this.connectCount++
        connection.connected = true
        reply({ client: connection.client, version: 1, ping: this.options.ping ?? 25_000 })
        if (this.options.sendPings) this.startPings(connection)
        return
      case 'subscribe': {
        const state = this.channel(command.channel)
        connection.channels.add(command.channel)
        const result: Record<string, unknown> = { offset: state.offset, epoch: state.epoch }
        if (command.since !== undefined) {
          const missed = state.history.filter((p) => p.offset > command.since!.offset)
          const covered =
            command.since.epoch === state.epoch &&
            (missed.length === state.offset - command.since.offset || state.offset === command.since.offset)
          result.recovered = covered
          if (covered) result.publications = missed
        }
        reply(result)
        return
      }
      case 'unsubscribe':
        connection.channels.delete(command.channel)
        reply({})
        return
      case 'publish': {
        const known = command.key === undefined ? undefined : this.publishedKeys.get(command.key)
        if (known !== undefined) {
          reply(known)
          return
        }
        const pub = this.publish(command.channel, command.data)
        const result = { offset: pub.offset, epoch: pub.epoch }
        if (command.key !== undefined) this.publishedKeys.set(command.key, result)
        reply(result)
        return
      }
      case 'rpc':
        reply({ data: command.data })
        return
      case 'presence':
        reply({ members: [] })
        return
      default:
        connection.send({ id: command.id, error: { code: 108, message: 'not available' } })
    }
  }

  private startPings(connection: FakeConnection): void {
    const timer = setInterval(() => {
      if (!this.connections.has(connection)) {
        clearInterval(timer)
        return
      }
      connection.send({ push: 'ping' })
    }, this.options.ping ?? 25_000)
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }
}
