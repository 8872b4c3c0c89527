/**
 * The demo's chat: rooms (topics), nicknames, join/leave notices, and the last messages of each
 * room kept in memory for late joiners. Wire format (JSON text messages):
 *
 *   client → server  { type: 'join', room, nick }   { type: 'say', text }
 *   server → client  { type: 'welcome', room, nick, history: Message[], members: string[] }
 *                    { type: 'message', room, nick, text, at }
 *                    { type: 'joined' | 'left', room, nick, members }
 *                    { type: 'error', message }
 */
import type { SendData } from '../server/server-websocket.js'

export interface ChatMessage {
  room: string
  nick: string
  text: string
  at: number
}

interface ChatMember {
  room?: string
  nick?: string
}

/** What the chat needs of a socket: Rally's ServerWebSocket, or rallyjs/ws's. */
export interface ChatSocket {
  send(data: SendData): unknown
  subscribe(topic: string): boolean
  unsubscribe(topic: string): boolean
  publish(topic: string, data: SendData): number
}

/** Bounds on what a chat peer can make the server keep. */
export const CHAT_LIMITS = {
  historyPerRoom: 100,
  nickLength: 24,
  roomLength: 32,
  textLength: 2000,
  rooms: 1000,
}

type Socket = ChatSocket

export class ChatRooms {
  private readonly history = new Map<string, ChatMessage[]>()
  private readonly members = new Map<string, Map<Socket, string>>()
  private readonly state = new WeakMap<Socket, ChatMember>()

  private stateOf(ws: Socket): ChatMember {
    let state = this.state.get(ws)
    if (state === undefined) {
      state = {}
      this.state.set(ws, state)
    }
    return state
  }

  handle(ws: Socket, raw: string): void {
    let message: { type?: unknown; room?: unknown; nick?: unknown; text?: unknown }
    try {
      message = JSON.parse(raw)
    } catch {
      this.error(ws, 'Messages are JSON')
      return
    }
    if (message.type === 'join') this.join(ws, String(message.room ?? ''), String(message.nick ?? ''))
    else if (message.type === 'say') this.say(ws, String(message.text ?? ''))
    else this.error(ws, 'Unknown message type')
  }

  private join(ws: Socket, roomName: string, nickName: string): void {
    const room = roomName.trim().slice(0, CHAT_LIMITS.roomLength)
    const nick = nickName.trim().slice(0, CHAT_LIMITS.nickLength)
    if (room === '' || nick === '') {
      this.error(ws, 'A room and a nickname are needed')
      return
    }
    if (!this.members.has(room) && this.members.size >= CHAT_LIMITS.rooms) {
      this.error(ws, 'Too many rooms')
      return
    }
    this.leave(ws)
    const state = this.stateOf(ws)
    state.room = room
    state.nick = nick
    let members = this.members.get(room)
    if (members === undefined) {
      members = new Map()
      this.members.set(room, members)
    }
    members.set(ws, nick)
    ws.subscribe(topic(room))
    ws.send(
      JSON.stringify({
        type: 'welcome',
        room,
        nick,
        history: this.history.get(room) ?? [],
        members: [...members.values()],
      }),
    )
    ws.publish(topic(room), JSON.stringify({ type: 'joined', room, nick, members: [...members.values()] }))
  }

  private say(ws: Socket, rawText: string): void {
    const { room, nick } = this.stateOf(ws)
    if (room === undefined || nick === undefined) {
      this.error(ws, 'Join a room first')
      return
    }
    const text = rawText.slice(0, CHAT_LIMITS.textLength)
    if (text.trim() === '') return
    const message: ChatMessage = { room, nick, text, at: Date.now() }
    let history = this.history.get(room)
    if (history === undefined) {
      history = []
      this.history.set(room, history)
      // Histories of at most `rooms` rooms are kept: the oldest room's goes first.
      if (this.history.size > CHAT_LIMITS.rooms) this.history.delete(this.history.keys().next().value!)
    }
    history.push(message)
    if (history.length > CHAT_LIMITS.historyPerRoom) history.shift()
    // Everyone in the room, the sender included (its own copy confirms delivery).
    ws.send(JSON.stringify({ type: 'message', ...message }))
    ws.publish(topic(room), JSON.stringify({ type: 'message', ...message }))
  }

  /** Leaves the current room (on join elsewhere, or when the socket closes). */
  leave(ws: Socket): void {
    const state = this.stateOf(ws)
    if (state.room === undefined) return
    const room = state.room
    const members = this.members.get(room)
    members?.delete(ws)
    ws.unsubscribe(topic(room))
    if (members !== undefined && members.size === 0) this.members.delete(room)
    ws.publish(
      topic(room),
      JSON.stringify({ type: 'left', room, nick: state.nick, members: [...(members?.values() ?? [])] }),
    )
    state.room = undefined
  }

  private error(ws: Socket, message: string): void {
    ws.send(JSON.stringify({ type: 'error', message }))
  }

  roomCount(): number {
    return this.members.size
  }
}

function topic(room: string): string {
  return `chat:${room}`
}
