/**
 * Heartbeats and idle timeouts for all of a server's sockets, with two shared timers rather than
 * timers per socket: 10,000 connections cost two timers, and a ping is one shared 2-byte frame.
 *
 * Liveness is "received anything": a pong, or any frame. Each socket's driver counts the chunks
 * it receives; a socket whose count has not moved since it was pinged, by the time `timeout` has
 * passed, is terminated (the close handler sees 1006).
 *
 * A socket whose reading we paused on purpose (the application's pauseReading, async handlers
 * pending, a message waiting for decompression) is not judged: its answers wait unread in the
 * kernel, and the silence is ours. Judgment resumes with reading — from the next ping on (the
 * driver counts a resume as input, so a ping answered while paused is not held against it).
 */
import { Buffer } from 'node:buffer'
import type { PreparedFrame } from '../protocol/connection.js'

/** What the monitor needs from each socket; the marks are the monitor's bookkeeping. */
export interface Monitored {
  readonly receiveCount: number
  /** Reading is paused on purpose: the peer's silence proves nothing (see above). */
  readonly readingHeld: boolean
  /** receiveCount when pinged in heartbeatRound. */
  heartbeatMark: number
  /** The ping round that set heartbeatMark; 0 before the first ping. */
  heartbeatRound: number
  /** receiveCount at the last idle check; -1 before the first one. */
  idleMark: number
  idleStrikes: number
  sendPreparedFrame(frame: PreparedFrame): void
  /** The peer did not answer in time. */
  heartbeatTimedOut(): void
  /** Nothing was received for the idle timeout. */
  idleTimedOut(): void
}

/** An empty ping: FIN + opcode 0x9, length 0 (RFC 6455 5.5.2). The same bytes for everyone. */
const PING_FRAME: PreparedFrame = { header: Buffer.from([0x89, 0x00]), payload: undefined }

export class LivenessMonitor<S extends Monitored> {
  private readonly sockets: () => Iterable<S>
  private readonly heartbeat: { interval: number; timeout: number } | false
  private readonly idleTimeout: number
  private pingTimer: NodeJS.Timeout | undefined
  private checkTimer: NodeJS.Timeout | undefined
  private idleTimer: NodeJS.Timeout | undefined
  private round = 0

  constructor(
    sockets: () => Iterable<S>,
    heartbeat: { interval: number; timeout: number } | false,
    idleTimeout: number,
  ) {
    this.sockets = sockets
    if (heartbeat !== false) {
      for (const [name, value] of Object.entries(heartbeat)) {
        if (!Number.isFinite(value) || value <= 0)
          throw new RangeError(`heartbeat.${name} must be a positive number of ms`)
      }
    }
    if (!Number.isFinite(idleTimeout) || idleTimeout < 0)
      throw new RangeError('idleTimeout must be a number of ms ≥ 0')
    this.heartbeat = heartbeat
    this.idleTimeout = idleTimeout
  }

  start(): void {
    if (this.heartbeat !== false && this.pingTimer === undefined) {
      this.pingTimer = setInterval(() => this.pingAll(), this.heartbeat.interval)
      this.pingTimer.unref()
    }
    if (this.idleTimeout > 0 && this.idleTimer === undefined) {
      // Checked twice per timeout: a socket is idle after two checks without input, so between
      // idleTimeout and 1.5 × idleTimeout after its last input.
      this.idleTimer = setInterval(() => this.checkIdle(), this.idleTimeout / 2)
      this.idleTimer.unref()
    }
  }

  stop(): void {
    clearInterval(this.pingTimer)
    clearInterval(this.idleTimer)
    clearTimeout(this.checkTimer)
    this.pingTimer = this.idleTimer = this.checkTimer = undefined
  }

  private pingAll(): void {
    if (this.heartbeat === false) return
    const round = ++this.round
    for (const socket of this.sockets()) {
      // A socket still silent since an earlier ping keeps that ping's marks, so that the check
      // of that round (which may run after this one, when timeout ≥ interval) still finds it.
      if (socket.readingHeld) {
        // Pinged all the same (the ping keeps NATs and proxies awake), but not judged.
        socket.heartbeatRound = 0
        socket.sendPreparedFrame(PING_FRAME)
        continue
      }
      const unanswered = socket.heartbeatRound !== 0 && socket.heartbeatMark === socket.receiveCount
      if (!unanswered) {
        socket.heartbeatMark = socket.receiveCount
        socket.heartbeatRound = round
      }
      socket.sendPreparedFrame(PING_FRAME)
    }
    this.checkTimer = setTimeout(
      () => {
        // After a stall of the event loop, this timer can fire before the pongs already waiting
        // in the sockets are read: judge in the check phase, after the poll phase has read them.
        setImmediate(() => this.checkPongs(round))
      },
      Math.min(this.heartbeat.timeout, this.heartbeat.interval),
    )
    this.checkTimer.unref()
  }

  /** Terminates the sockets pinged in `round` from which nothing has arrived since. */
  private checkPongs(round: number): void {
    const dead: S[] = []
    for (const socket of this.sockets()) {
      // Silent since a ping of this round or an earlier one (round 0: never pinged yet).
      const pinged = socket.heartbeatRound !== 0 && socket.heartbeatRound <= round
      if (pinged && !socket.readingHeld && socket.heartbeatMark === socket.receiveCount) dead.push(socket)
    }
    for (const socket of dead) socket.heartbeatTimedOut()
  }

  private checkIdle(): void {
    const idle: S[] = []
    for (const socket of this.sockets()) {
      if (socket.readingHeld) {
        // Nothing can be received while we do not read: start over once reading resumes.
        socket.idleMark = -1
        socket.idleStrikes = 0
      } else if (socket.idleMark === -1) {
        // First sight of this socket: it may have opened just now. Strikes start next check.
        socket.idleMark = socket.receiveCount
      } else if (socket.idleMark === socket.receiveCount) {
        if (++socket.idleStrikes >= 2) idle.push(socket)
      } else {
        socket.idleMark = socket.receiveCount
        socket.idleStrikes = 0
      }
    }
    for (const socket of idle) socket.idleTimedOut()
  }
}
