/**
 * A tiny TCP load balancer for the cluster tests: each incoming connection goes to the next
 * backend in turn (round-robin); a backend that refuses the connection (a node killed with -9) is
 * skipped for the next one, so that clients of a dead node reconnect to a live one through the
 * same address, as they would behind nginx. Bytes are piped untouched both ways; a close on
 * either side closes the other.
 */
import { once } from 'node:events'
import { createConnection, createServer, type Server, type Socket } from 'node:net'

export class Balancer {
  readonly port: number
  /** Connections piped to each backend port so far (for the tests' spread checks). */
  readonly routed = new Map<number, number>()
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private next = 0

  private constructor(
    server: Server,
    port: number,
    private readonly backends: number[],
  ) {
    this.server = server
    this.port = port
  }

  /** Listens on a free port of 127.0.0.1 in front of the given backend ports. */
  static async start(backends: readonly number[]): Promise<Balancer> {
    let balancer: Balancer | undefined
    const server = createServer((client) => balancer?.accept(client))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const address = server.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    balancer = new Balancer(server, port, [...backends])
    return balancer
  }

  /** Replaces the backend list (a node restarted on another port). */
  setBackends(backends: readonly number[]): void {
    this.backends.splice(0, this.backends.length, ...backends)
  }

  private accept(client: Socket): void {
    this.sockets.add(client)
    client.once('close', () => this.sockets.delete(client))
    client.on('error', () => client.destroy())
    client.pause()
    const start = this.next++ % Math.max(1, this.backends.length)
    this.connect(client, start, 0)
  }

  /** Tries backends from `index` on; gives up (closing the client) once every one refused. */
  private connect(client: Socket, index: number, tried: number): void {
    if (client.destroyed) return
    if (tried >= this.backends.length) {
      client.destroy()
      return
    }
    const port = this.backends[index % this.backends.length]!
    const backend = createConnection({ host: '127.0.0.1', port })
    const refused = () => {
      backend.destroy()
      this.connect(client, index + 1, tried + 1)
    }
    backend.once('error', refused)
    backend.once('connect', () => {
      backend.off('error', refused)
      this.routed.set(port, (this.routed.get(port) ?? 0) + 1)
      this.sockets.add(backend)
      backend.once('close', () => {
        this.sockets.delete(backend)
        client.destroy()
      })
      backend.on('error', () => backend.destroy())
      client.once('close', () => backend.destroy())
      client.pipe(backend)
      backend.pipe(client)
      client.resume()
    })
  }

  /** Stops accepting and destroys every connection. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    const closed = once(this.server, 'close')
    this.server.close()
    await closed
  }
}
