/**
 * The multiplayer game (issue 15, page 3): a shared arena where each player steers a disc and
 * races the others to a star. The server is the authority: clients send only their intended
 * direction (RPC `game.input`), the server moves everyone at a fixed tick (20 Hz by default) and
 * publishes the whole state on `game:<node id>`, a channel without history (a past frame is worth
 * nothing). Each node of a cluster runs its own arena on its own channel: two nodes publishing
 * frames of two games on one channel would make every player flicker between them. `game.join`
 * tells the page which channel to watch. Pages draw between two ticks by interpolation, and each player's round trip — the
 * time its last input took to be answered — travels in the state for everyone to see.
 */
import type { ChannelRule, RpcHandler } from '../realtime/hub.js'
import { ErrorCode, type Realtime, RealtimeError, type RealtimeSession } from '../realtime/index.js'
import type { DemoPage, DemoSetup } from './server.js'

export const GAME_PREFIX = 'game:'

export const GAME_LIMITS = {
  players: 24,
  /** Round trips above this are reported as this (a page can say anything; keep it plausible). */
  rttMs: 60_000,
}

/** Arena size in world units, speed in units per second, radii of a player and of the star. */
export const ARENA = { width: 800, height: 500, speed: 220, playerRadius: 14, starRadius: 10 }

export interface GameOptions {
  /** Ticks per second. Default 20. */
  tickHz?: number
}

export interface PlayerState {
  id: string
  nick: string
  x: number
  y: number
  color: string
  score: number
  /** The player's last measured round trip in ms (undefined until it reported one). */
  rtt: number | undefined
}

export interface GameFrame {
  tick: number
  /** The server's clock when the frame was made: pages interpolate on this time line. */
  at: number
  tickMs: number
  players: PlayerState[]
  star: { x: number; y: number }
}

interface Player extends PlayerState {
  session: RealtimeSession
  dx: number
  dy: number
}

export interface Game {
  /** Channel rules and RPC methods to give createRealtime. */
  readonly channels: Record<string, ChannelRule>
  readonly rpc: Record<string, RpcHandler>
  /** Starts publishing on `realtime` (the one built with the rules above). */
  start(realtime: Realtime): void
  /** Players in the arena now. */
  readonly players: readonly PlayerState[]
  close(): void
}

/** Only the server publishes frames; no history: a late frame is useless. */
const GAME_CHANNELS: Record<string, ChannelRule> = { [`${GAME_PREFIX}*`]: { publish: false } }

const COLORS = ['#5ec2ff', '#ff7ab6', '#43d17a', '#ffb454', '#9b7bff', '#ff6b6b', '#4de1d2', '#e2e36b']

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function unit(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < -1 || value > 1)
    throw new RealtimeError(ErrorCode.BadRequest, `"${name}" must be a number from -1 to 1`, name)
  return value
}

export function createGame(options: GameOptions = {}): Game {
  const tickHz = options.tickHz ?? 20
  if (!(tickHz >= 1 && tickHz <= 60)) throw new RangeError('createGame: tickHz must be from 1 to 60')
  const tickMs = 1000 / tickHz
  const players = new Map<RealtimeSession, Player>()
  let realtime: Realtime | undefined
  /** This node's arena channel, known once started. */
  let channel = ''
  let timer: ReturnType<typeof setInterval> | undefined
  let tick = 0
  let lastAt = 0
  let nextId = 0
  const star = { x: ARENA.width / 2, y: ARENA.height / 2 }

  function placeStar(): void {
    star.x = ARENA.starRadius + Math.random() * (ARENA.width - 2 * ARENA.starRadius)
    star.y = ARENA.starRadius + Math.random() * (ARENA.height - 2 * ARENA.starRadius)
  }

  function publicState(player: Player): PlayerState {
    const { id, nick, x, y, color, score, rtt } = player
    return { id, nick, x: Math.round(x * 10) / 10, y: Math.round(y * 10) / 10, color, score, rtt }
  }

  function step(): void {
    const now = Date.now()
    const seconds = Math.min(0.25, (now - lastAt) / 1000)
    lastAt = now
    for (const [session, player] of players) {
      // A player whose connection ended leaves the arena (a reconnected page joins again).
      if (session.isClosed) {
        players.delete(session)
        continue
      }
      const length = Math.hypot(player.dx, player.dy)
      if (length > 0) {
        const distance = (ARENA.speed * seconds) / Math.max(1, length)
        player.x = Math.min(
          ARENA.width - ARENA.playerRadius,
          Math.max(ARENA.playerRadius, player.x + player.dx * distance),
        )
        player.y = Math.min(
          ARENA.height - ARENA.playerRadius,
          Math.max(ARENA.playerRadius, player.y + player.dy * distance),
        )
      }
      if (Math.hypot(player.x - star.x, player.y - star.y) < ARENA.playerRadius + ARENA.starRadius) {
        player.score++
        placeStar()
      }
    }
    if (players.size === 0) {
      // Nobody left: the tick stops, an idle demo costs nothing.
      clearInterval(timer)
      timer = undefined
    }
    const frame: GameFrame = {
      tick: ++tick,
      at: now,
      tickMs,
      players: [...players.values()].map(publicState),
      star: { x: Math.round(star.x), y: Math.round(star.y) },
    }
    realtime?.publish(channel, frame).catch((error) => console.error(error))
  }

  function ensureTicking(): void {
    if (timer !== undefined || realtime === undefined) return
    lastAt = Date.now()
    timer = setInterval(step, tickMs)
    timer.unref()
  }

  const join: RpcHandler = (session) => {
    if (realtime === undefined) throw new RealtimeError(ErrorCode.NotAvailable, 'the arena is closed')
    let player = players.get(session)
    if (player === undefined) {
      if (players.size >= GAME_LIMITS.players)
        throw new RealtimeError(ErrorCode.LimitExceeded, `the arena is full (${GAME_LIMITS.players} players)`)
      const id = `p${++nextId}`
      player = {
        id,
        session,
        nick: session.user === '' ? id : session.user,
        x: ARENA.playerRadius + Math.random() * (ARENA.width - 2 * ARENA.playerRadius),
        y: ARENA.playerRadius + Math.random() * (ARENA.height - 2 * ARENA.playerRadius),
        color: COLORS[nextId % COLORS.length]!,
        score: 0,
        rtt: undefined,
        dx: 0,
        dy: 0,
      }
      players.set(session, player)
      ensureTicking()
    }
    return { id: player.id, arena: ARENA, tickMs, channel }
  }

  const input: RpcHandler = (session, data) => {
    const player = players.get(session)
    if (player === undefined)
      throw new RealtimeError(ErrorCode.NotAvailable, 'join the game first (game.join)')
    if (!isRecord(data))
      throw new RealtimeError(ErrorCode.BadRequest, 'input must be an object { dx, dy, rtt? }')
    player.dx = unit(data.dx, 'dx')
    player.dy = unit(data.dy, 'dy')
    if (data.rtt !== undefined) {
      if (typeof data.rtt !== 'number' || !Number.isFinite(data.rtt) || data.rtt < 0)
        throw new RealtimeError(ErrorCode.BadRequest, '"rtt" must be a number of milliseconds', 'rtt')
      player.rtt = Math.round(Math.min(GAME_LIMITS.rttMs, data.rtt))
    }
    return { tick }
  }

  return {
    channels: GAME_CHANNELS,
    rpc: { 'game.join': join, 'game.input': input },
    start(target) {
      realtime = target
      channel = `${GAME_PREFIX}${target.bus.nodeId}`
      if (players.size > 0) ensureTicking()
    },
    get players() {
      return [...players.values()].map(publicState)
    },
    close() {
      clearInterval(timer)
      timer = undefined
      realtime = undefined
      players.clear()
    },
  }
}

/**
 * The arena as a demo page: one game per demo, made with its RPC methods and started by its
 * install step (both receive the demo's metrics object, which is made once per demo).
 */
const games = new WeakMap<DemoSetup['metrics'], Game>()

export const gamePage: DemoPage = {
  name: 'game',
  channels: GAME_CHANNELS,
  rpc(setup) {
    const game = createGame()
    games.set(setup.metrics, game)
    return game.rpc
  },
  install({ metrics, realtime }) {
    const game = games.get(metrics)
    if (game === undefined) throw new Error('the game page was installed without its RPC methods')
    game.start(realtime)
    return () => {
      game.close()
      games.delete(metrics)
    }
  },
}
