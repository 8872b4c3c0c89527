/**
 * The demo's chat and notifications on the realtime layer (issue 15): the chat (`chat:<room>`
 * with history and presence, `typing:<room>` without history), per-user notifications
 * (`notify:<user>`, published by `POST /api/notify`), and who may connect (authenticateNick).
 *
 * Identity is a nickname the page sends as its token: good enough for a demo, not authentication
 * (anyone can type any nickname). The notify endpoint is the one thing guarded, by a bearer token.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { Authentication, Realtime, RealtimeSession } from '../realtime/index.js'
import type { DemoPage } from './server.js'

/** Where pages connect. */
export const LIVE_PATH = '/rt'

/** Bounds on what a page can make the server keep or relay. */
export const LIVE_LIMITS = {
  nickLength: 24,
  textLength: 2000,
  titleLength: 120,
  bodyLength: 1000,
  /** Bytes of a POST /api/notify body. */
  notifyBodyBytes: 8 * 1024,
  history: 200,
  historyTtl: 60 * 60_000,
}

const NICK = /^[\p{L}\p{N}_.-]{1,24}$/u

export interface Live {
  realtime: Realtime
  notifyToken: string
  /** Whether the token was generated here (the CLI prints it then). */
  notifyTokenGenerated: boolean
}

/** The notify endpoint's token: the option, else RALLY_NOTIFY_TOKEN, else a random one. */
export function notifyTokenFor(given: string | undefined): { token: string; generated: boolean } {
  const chosen = given ?? process.env.RALLY_NOTIFY_TOKEN
  if (chosen !== undefined && chosen !== '') return { token: chosen, generated: false }
  return { token: randomBytes(18).toString('base64url'), generated: true }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isChatMessage(data: unknown): boolean {
  return (
    isRecord(data) &&
    typeof data.text === 'string' &&
    data.text.trim() !== '' &&
    data.text.length <= LIVE_LIMITS.textLength &&
    Object.keys(data).length === 1
  )
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  // timingSafeEqual needs equal lengths; the length itself is not the secret.
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * Who connects: a nickname as the token, or no token at all for the pages that need no name
 * (the dashboard); those anonymous sessions (user '') cannot use the named channels.
 */
export function authenticateNick(_request: unknown, token: string | undefined): Authentication {
  if (token === undefined || token === '') return { user: '' }
  if (!NICK.test(token)) return { refuse: 'a nickname (letters, digits, _ . -) is needed' }
  return { user: token, info: { nick: token } }
}

const named = (session: RealtimeSession) => session.user !== ''

/** The chat: `chat:<room>` with history and presence, `typing:<room>` without history. */
export const chatPage: DemoPage = {
  name: 'chat',
  channels: {
    'chat:*': {
      subscribe: named,
      publish: (session, _channel, data) => named(session) && isChatMessage(data),
      history: { size: LIVE_LIMITS.history, ttl: LIVE_LIMITS.historyTtl },
      presence: true,
    },
    // Typing indicators are ephemeral: no history, nothing to recover.
    'typing:*': {
      subscribe: named,
      publish: (session, _channel, data) => named(session) && isRecord(data) && data.typing === true,
    },
  },
}

/** Notifications: `notify:<user>` (only that user subscribes), published by `POST /api/notify`. */
export const notifyPage: DemoPage = {
  name: 'notifications',
  channels: {
    'notify:*': {
      subscribe: (session, channel) => named(session) && channel === `notify:${session.user}`,
      history: { size: 50, ttl: LIVE_LIMITS.historyTtl },
    },
  },
  install({ app, realtime, live }) {
    app.post('/api/notify', async (c) => {
      const authorization = c.req.header('authorization') ?? ''
      const match = /^Bearer\s+(\S+)$/i.exec(authorization)
      if (match === null || !sameToken(match[1]!, live.notifyToken)) {
        c.header('WWW-Authenticate', 'Bearer realm="rally-demo"')
        return c.json({ error: 'a valid bearer token is needed (Authorization: Bearer <token>)' }, 401)
      }
      const declared = Number(c.req.header('content-length') ?? 0)
      if (declared > LIVE_LIMITS.notifyBodyBytes)
        return c.json({ error: `the body is limited to ${LIVE_LIMITS.notifyBodyBytes} bytes` }, 413)
      const text = await c.req.text()
      if (Buffer.byteLength(text) > LIVE_LIMITS.notifyBodyBytes)
        return c.json({ error: `the body is limited to ${LIVE_LIMITS.notifyBodyBytes} bytes` }, 413)
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        return c.json({ error: 'the body is not JSON: send {"user", "title", "body"?}' }, 400)
      }
      if (!isRecord(body))
        return c.json({ error: 'the body must be a JSON object {"user", "title", "body"?}' }, 400)
      const { user, title, body: message } = body
      if (typeof user !== 'string' || !NICK.test(user))
        return c.json({ error: '"user" must be a nickname (1-24 letters, digits, _ . -)' }, 400)
      if (typeof title !== 'string' || title.trim() === '' || title.length > LIVE_LIMITS.titleLength)
        return c.json(
          { error: `"title" must be a non-empty string of at most ${LIVE_LIMITS.titleLength} characters` },
          400,
        )
      if (message !== undefined && (typeof message !== 'string' || message.length > LIVE_LIMITS.bodyLength))
        return c.json(
          { error: `"body" must be a string of at most ${LIVE_LIMITS.bodyLength} characters` },
          400,
        )
      const notification = { title, body: message ?? '', at: Date.now() }
      const { offset } = await realtime.publish(`notify:${user}`, notification)
      return c.json({ channel: `notify:${user}`, offset }, 202)
    })
  },
}
