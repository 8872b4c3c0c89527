/**
 * Plain sockets and ports on 127.0.0.1 for every suite: listening on a free port, a port nothing
 * listens on, and a raw TCP server whose connections the test drives byte by byte.
 */

import type { Server as HttpServer } from 'node:http'
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net'

export const HOST = '127.0.0.1'

/** Listens on 127.0.0.1 and a free port (port 0) and returns that port. */
export async function listenOnFreePort(server: Server | HttpServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, () => {
      server.removeListener('error', reject)
      resolve()
    })
  })
  return (server.address() as AddressInfo).port
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer()
  const port = await listenOnFreePort(server)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** A TCP server on a free port whose every connection goes to `onConnection`; `close()` destroys them all. */
export interface RawServer {
  port: number
  sockets: Set<Socket>
  close(): Promise<void>
}

export async function rawServer(onConnection: (socket: Socket) => void): Promise<RawServer> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onConnection(socket)
  })
  const port = await listenOnFreePort(server)
  return {
    port,
    sockets,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
