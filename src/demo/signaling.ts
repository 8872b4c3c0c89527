/**
 * WebRTC signaling (issue 15, page 5): Rally as the signaling server the primer describes. Pages
 * meet in `signal:<room>` (presence on, no history: an old offer is worthless), post offers,
 * answers and ICE candidates addressed to one another, then talk over an RTCDataChannel that
 * does not touch the server. The server counts what it relays per room, so that a page — and the
 * browser test — can show that the peer-to-peer messages never came through it. Rooms are open:
 * every member receives every signaling message (the address tells pages which are theirs).
 */
import type { Hono } from 'hono'
import type { ChannelRule } from '../realtime/hub.js'
import { ErrorCode, RealtimeError } from '../realtime/index.js'
import type { DemoPage } from './server.js'

export const SIGNAL_PREFIX = 'signal:'

export const SIGNAL_LIMITS = {
  /** A session description; Chromium's with one data channel is about 600 bytes. */
  sdpLength: 16 * 1024,
  candidateLength: 1024,
  /** Rooms whose counters are kept (the least recently used goes beyond). */
  rooms: 200,
}

const TYPES = new Set(['offer', 'answer', 'candidate'])
const PEER = /^[\p{L}\p{N}_.-]{1,24}$/u
const ROOM = /^[\w-]{1,32}$/

/** What the server relayed in a room: messages by type, and their bytes as JSON. */
export interface SignalCounts {
  offer: number
  answer: number
  candidate: number
  total: number
  bytes: number
}

export interface Signaling {
  readonly channels: Record<string, ChannelRule>
  /** Counters of a room (zeros for a room never used). */
  counts(room: string): SignalCounts
  /** GET /api/signal/stats?room=… */
  install(app: Hono): void
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const CANDIDATE_FIELDS = new Set(['candidate', 'sdpMid', 'sdpMLineIndex', 'usernameFragment'])

function invalid(message: string, field: string): never {
  throw new RealtimeError(ErrorCode.InvalidData, message, field)
}

/**
 * Checks a signaling message — `{ to, type: 'offer' | 'answer', sdp }` or
 * `{ to, type: 'candidate', candidate }` (RTCIceCandidateInit, or null for the end of candidates)
 * — and says what is wrong with one that is not (112, naming the field).
 */
export function checkSignal(data: unknown): void {
  if (!isRecord(data)) invalid('a signal is an object { to, type, sdp | candidate }', '')
  if (typeof data.to !== 'string' || !PEER.test(data.to)) invalid('"to" must be a peer name', 'to')
  if (typeof data.type !== 'string' || !TYPES.has(data.type))
    invalid('"type" must be offer, answer or candidate', 'type')
  const payload = data.type === 'candidate' ? 'candidate' : 'sdp'
  for (const key of Object.keys(data))
    if (key !== 'to' && key !== 'type' && key !== payload) invalid(`a ${data.type} has no "${key}"`, key)
  if (payload === 'sdp') {
    if (typeof data.sdp !== 'string' || data.sdp.length > SIGNAL_LIMITS.sdpLength)
      invalid(`"sdp" must be a session description of at most ${SIGNAL_LIMITS.sdpLength} characters`, 'sdp')
    return
  }
  const candidate = data.candidate
  if (candidate === null) return
  if (
    !isRecord(candidate) ||
    typeof candidate.candidate !== 'string' ||
    candidate.candidate.length > SIGNAL_LIMITS.candidateLength ||
    !Object.keys(candidate).every((key) => CANDIDATE_FIELDS.has(key))
  )
    invalid('"candidate" must be an RTCIceCandidateInit (or null at the end of candidates)', 'candidate')
}

export function createSignaling(): Signaling {
  const rooms = new Map<string, SignalCounts>()

  function countsFor(room: string): SignalCounts {
    let counts = rooms.get(room)
    if (counts !== undefined) {
      // Most recently used last: the first entry is the one to drop.
      rooms.delete(room)
      rooms.set(room, counts)
      return counts
    }
    counts = { offer: 0, answer: 0, candidate: 0, total: 0, bytes: 0 }
    if (rooms.size >= SIGNAL_LIMITS.rooms) rooms.delete(rooms.keys().next().value!)
    rooms.set(room, counts)
    return counts
  }

  function counts(room: string): SignalCounts {
    return { ...(rooms.get(room) ?? { offer: 0, answer: 0, candidate: 0, total: 0, bytes: 0 }) }
  }

  return {
    channels: {
      [`${SIGNAL_PREFIX}*`]: {
        presence: true,
        // Peers are named (their token): a message's sender is the publication's user.
        subscribe: (session, channel) =>
          session.user !== '' && ROOM.test(channel.slice(SIGNAL_PREFIX.length)),
        publish(session, channel, data) {
          if (session.user === '') return false
          checkSignal(data)
          // Counted as accepted: everything the server relays in a room goes through here.
          const counts = countsFor(channel.slice(SIGNAL_PREFIX.length))
          const type = (data as { type: 'offer' | 'answer' | 'candidate' }).type
          counts[type]++
          counts.total++
          counts.bytes += Buffer.byteLength(JSON.stringify(data))
          return true
        },
      },
    },
    counts,
    install(app) {
      app.get('/api/signal/stats', (c) => {
        const room = c.req.query('room') ?? ''
        if (!ROOM.test(room)) return c.json({ error: '"room" must be 1-32 letters, digits, _ or -' }, 400)
        c.header('Cache-Control', 'no-store')
        return c.json({ room, relayed: counts(room) })
      })
    },
  }
}

/** Signaling as a demo page. Its counters are the process's (channel rules are made once). */
const signaling = createSignaling()

export const signalingPage: DemoPage = {
  name: 'webrtc',
  channels: signaling.channels,
  install({ app }) {
    signaling.install(app)
  },
}
