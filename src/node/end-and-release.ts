/**
 * A final HTTP answer on a socket that will not become a WebSocket (a refused upgrade).
 *
 * Sockets from node:http allow half-open connections, so after `end()` a peer that never closes
 * its side would hold the socket — and the HTTP server's `close()`, which waits for every
 * connection — forever. The socket is destroyed after a short linger instead, long enough for
 * the answer to reach a well-behaved peer; whatever the peer still sends meanwhile is read and
 * dropped, and a reset at that point is ignored.
 */
import type { Duplex } from 'node:stream'

/** How long a refused peer may keep its side of the connection open after the answer. */
export const REFUSAL_LINGER_MS = 1000

export function endAndRelease(
  socket: Duplex,
  answer: string | Uint8Array,
  lingerMs = REFUSAL_LINGER_MS,
): void {
  socket.on('error', ignoreError)
  if (socket.destroyed) return
  socket.end(answer)
  socket.resume()
  setTimeout(destroySocket, lingerMs, socket).unref()
}

function destroySocket(socket: Duplex): void {
  socket.destroy()
}

function ignoreError(): void {}
