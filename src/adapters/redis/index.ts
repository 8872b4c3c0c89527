/**
 * `rallyjs/redis`: the cluster bus on Redis (7.0 or later), with the `redis` package (v5 or later,
 * an optional peer dependency imported only here).
 *
 * - **Offsets, history, fan-out in one step.** One Lua script per publication increments the
 *   channel's offset, appends to the channel's Redis Stream (trimmed by size with MAXLEN and by
 *   age with MINID) and publishes on the channel's pub/sub channel. Scripts run atomically, so
 *   every node sees the same offset for the same publication and pub/sub delivers in offset order.
 * - **Epoch.** Each channel's epoch is a field of its meta hash, created with HSETNX by whichever
 *   script first needs it. A flushed or restarted Redis without persistence has no meta hash, so
 *   the next script creates a new epoch and offsets restart at 1; nobody mistakes them for the
 *   old ones.
 * - **Fan-out** is one pub/sub channel per Rally channel, subscribed while this node has local
 *   subscribers (reference-counted), never a pattern subscription. With `sharded: true`, SSUBSCRIBE
 *   and SPUBLISH (Redis 7 sharded pub/sub, for Redis Cluster; a standalone Redis 7 accepts them too).
 *   Every key and pub/sub channel of one Rally channel carries the same hash tag.
 * - **Presence**: a hash (client → member) and a sorted set (client → expiry time) per channel;
 *   each node refreshes the expiry of its own members on a timer, so a dead node's members drop
 *   out within `presenceTtl`. Reads remove expired members first.
 * - **Ephemeral events** travel on a separate pub/sub channel per Rally channel.
 * - **Broker restarts.** The `redis` client reconnects and resubscribes on its own; once the
 *   subscriber connection is ready again, this bus calls the gap listeners with the channels it
 *   holds, so the real-time layer recovers them from the streams (or learns the epoch changed).
 *   A publication arriving with a new epoch (a flush without a disconnect) reports a gap too.
 *   `status` is `down` from the moment either connection is lost until both serve again and
 *   every subscription is back in place.
 * - **Idempotent publishes**: the publish script sets the id's key with NX and a time to live
 *   (`dedupTtl`) next to the channel's other keys; a publish finding it returns the position it
 *   holds and publishes nothing.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createClient } from 'redis'
import type * as contract from '../../pubsub/bus.js'
import { BrokerBusBase, type BrokerBusOptions, handToAll, joinFeed } from '../../pubsub/bus-support.js'

/** A pub/sub listener in buffer mode: the message and the channel it came on. */
export type RedisBufferListener = (message: Buffer, channel: Buffer) => unknown

/**
 * What this bus needs from a Redis client, described by shape so that the core does not depend on
 * one library's types: the `redis` package's client (v5+) has it. Two connections are used: one
 * for commands, one in subscriber mode.
 */
export interface RedisClientLike {
  readonly isReady: boolean
  sendCommand(args: string[]): Promise<unknown>
  subscribe(channels: string, listener: RedisBufferListener, bufferMode: true): Promise<unknown>
  unsubscribe(channels: string, listener: RedisBufferListener, bufferMode: true): Promise<unknown>
  sSubscribe(channels: string, listener: RedisBufferListener, bufferMode: true): Promise<unknown>
  sUnsubscribe(channels: string, listener: RedisBufferListener, bufferMode: true): Promise<unknown>
  on(event: 'ready' | 'end' | 'reconnecting' | 'error', listener: (...args: unknown[]) => void): unknown
  close(): Promise<unknown>
}

export interface RedisBusOptions extends BrokerBusOptions {
  /** `redis://…` URL; ignored when `clients` are given. Default `redis://127.0.0.1:6379`. */
  readonly url?: string
  /** Two connected clients of your own: `commands`, and `subscriber` (a separate connection). */
  readonly clients?: { readonly commands: RedisClientLike; readonly subscriber: RedisClientLike }
  /** Prefix of every key and pub/sub channel. Default `rally`. */
  readonly prefix?: string
  /** Sharded pub/sub (SSUBSCRIBE/SPUBLISH), for Redis Cluster. Default false. */
  readonly sharded?: boolean
  /** Milliseconds a channel's meta hash (its epoch and offset) lives after its last publication; 0 keeps it. Default 0. */
  readonly metaTtl?: number
  /** Errors the clients report while they reconnect (they keep trying). Default: ignored. */
  readonly onError?: (error: unknown) => void
}

// One publication. KEYS: meta hash, stream, pub/sub channel, and the idempotency id's key when
// there is one. ARGV: candidate epoch, data, info ('' for none), history size and ttl (ms) (both
// '' for the channel's last policy, kept in the meta hash), node id, meta ttl (ms, 0 keeps),
// publish command, the id's time to live (ms). Returns epoch, offset, time, and '1' when the id
// was already there (nothing published: the position is the first publication's).
// Stream entry ids are `<offset>-0`, so a history read seeks straight to an offset, and MINID
// trims by offset: the first entry still within its age limit is found from the oldest end.
const PUBLISH_SCRIPT = `
if #KEYS > 3 then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then
    local e, o, t = string.match(earlier, '^(%S+) (%S+) (%S+)$')
    return {e, o, t, '1'}
  end
end
local epoch = ARGV[1]
if redis.call('HSETNX', KEYS[1], 'e', epoch) == 1 then
  redis.call('DEL', KEYS[2])
else
  epoch = redis.call('HGET', KEYS[1], 'e')
end
local offset = string.format('%.0f', redis.call('HINCRBY', KEYS[1], 's', 1))
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now = string.format('%.0f', nowMs)
local size, ttl
if ARGV[4] == '' then
  size = tonumber(redis.call('HGET', KEYS[1], 'hs') or '0')
  ttl = tonumber(redis.call('HGET', KEYS[1], 'ht') or '0')
else
  size, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'hs', ARGV[4], 'ht', ARGV[5])
end
if size > 0 then
  -- Expiry 0: no age limit (ttl 0), only the size.
  local expiry = '0'
  if ttl > 0 then expiry = string.format('%.0f', nowMs + ttl) end
  local fields = {'t', now, 'x', expiry, 'd', ARGV[2]}
  if ARGV[3] ~= '' then table.insert(fields, 'i'); table.insert(fields, ARGV[3]) end
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-0', unpack(fields))
  -- Age trimming: usually the oldest entry is still alive and one read of one entry settles it;
  -- otherwise expired entries go by chunks of 16 up to the first live one.
  local count, keep, dropped = 1, nil, false
  while keep == nil do
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', count)
    if #oldest == 0 then break end
    for index, entry in ipairs(oldest) do
      local f = entry[2]
      for i = 1, #f, 2 do
        if f[i] == 'x' and (f[i + 1] == '0' or tonumber(f[i + 1]) > nowMs) then keep = entry[1] end
      end
      if keep ~= nil then
        if index > 1 then dropped = true end
        break
      end
    end
    if keep == nil then
      -- Every entry read has expired. Ids are <offset>-0: MINID <last offset + 1>-0 drops them.
      local last = tonumber(string.match(oldest[#oldest][1], '^(%d+)'))
      redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f', last + 1) .. '-0')
    end
    count = 16
  end
  if dropped then redis.call('XTRIM', KEYS[2], 'MINID', keep) end
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end
else
  redis.call('DEL', KEYS[2])
end
if tonumber(ARGV[7]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
redis.call(ARGV[8], KEYS[3], ARGV[6] .. ' ' .. offset .. ' ' .. epoch .. ' ' .. now .. ' ' .. string.len(ARGV[3]) .. '\\n' .. ARGV[3] .. ARGV[2])
if #KEYS > 3 then redis.call('SET', KEYS[4], epoch .. ' ' .. offset .. ' ' .. now, 'PX', ARGV[9], 'NX') end
return {epoch, offset, now, '0'}
`

// A history read. KEYS: meta hash, stream. ARGV: candidate epoch, since offset (-1 for the
// latest), since epoch, limit. Returns epoch, latest offset, then offset, time, data, info per
// publication (oldest first), leaving out entries past their age limit that no publication has
// trimmed yet (an idle channel).
const HISTORY_SCRIPT = `
local epoch = ARGV[1]
if redis.call('HSETNX', KEYS[1], 'e', epoch) == 0 then epoch = redis.call('HGET', KEYS[1], 'e') end
local top = string.format('%.0f', tonumber(redis.call('HGET', KEYS[1], 's') or '0'))
local limit = tonumber(ARGV[4])
local out = {epoch, top}
if limit <= 0 then return out end
local entries
local since = tonumber(ARGV[2])
if since < 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
  local n = #entries
  for i = 1, math.floor(n / 2) do entries[i], entries[n + 1 - i] = entries[n + 1 - i], entries[i] end
elseif ARGV[3] == epoch then
  entries = redis.call('XRANGE', KEYS[2], string.format('%.0f', since + 1) .. '-0', '+', 'COUNT', limit)
else
  return out
end
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, entry in ipairs(entries) do
  local f = entry[2]
  local time, expiry, data, info = '0', 0, '', ''
  for i = 1, #f, 2 do
    if f[i] == 't' then time = f[i + 1]
    elseif f[i] == 'x' then expiry = tonumber(f[i + 1])
    elseif f[i] == 'd' then data = f[i + 1]
    elseif f[i] == 'i' then info = f[i + 1] end
  end
  if expiry == 0 or expiry > nowMs then
    table.insert(out, string.sub(entry[1], 1, -3))
    table.insert(out, time)
    table.insert(out, data)
    table.insert(out, info)
  end
end
return out
`

// Adds or refreshes members. KEYS: presence hash, expiry zset. ARGV: ttl (ms), then client id and
// member JSON per member. The keys themselves expire when no node refreshes anything any more.
const PRESENCE_REFRESH_SCRIPT = `
local t = redis.call('TIME')
local expiry = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1]))
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 0
`

// Removes expired members, then returns the members (ARGV[1] = 'list') or their count.
const PRESENCE_READ_SCRIPT = `
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('HDEL', KEYS[1], unpack(expired))
end
if ARGV[1] == 'list' then return redis.call('HVALS', KEYS[1]) end
return redis.call('HLEN', KEYS[1])
`

class Script {
  readonly sha: string
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }
}

const SCRIPTS = {
  publish: new Script(PUBLISH_SCRIPT),
  history: new Script(HISTORY_SCRIPT),
  presenceRefresh: new Script(PRESENCE_REFRESH_SCRIPT),
  presenceRead: new Script(PRESENCE_READ_SCRIPT),
}

interface Fanout<T> {
  readonly receivers: Set<(value: T) => void>
  readonly ready: Promise<unknown>
  readonly listener: RedisBufferListener
}

interface LastDelivered {
  epoch: string
  offset: number
}

function newEpoch(): string {
  return randomBytes(6).toString('base64url')
}

/** A channel name is the hash tag of all its keys, so that they share one Cluster slot. */
function tagged(prefix: string, channel: string, suffix: string): string {
  return `${prefix}:{${channel}}:${suffix}`
}

/** The Rally cluster bus on Redis. Create it with `await RedisBus.connect({ url })`. */
export class RedisBus extends BrokerBusBase implements contract.Bus {
  readonly nodeId = randomBytes(9).toString('base64url')

  readonly #commands: RedisClientLike
  readonly #subscriber: RedisClientLike
  readonly #ownsClients: boolean
  readonly #prefix: string
  readonly #sharded: boolean
  readonly #metaTtl: number
  readonly #publications = new Map<string, Fanout<contract.BusPublication>>()
  readonly #lastDelivered = new Map<string, LastDelivered>()
  readonly #events = new Map<string, Fanout<contract.BusEvent>>()
  /** This node's presence members per channel, re-sent on every refresh. */
  readonly #members = new Map<string, Map<string, string>>()
  #disconnected = false
  /** The subscriber serves with every subscription in place (false from a disconnection until resubscribed). */
  #subscriptionsInPlace = true
  #closed = false

  /** Connects two clients (commands, subscriber) to `url` and returns the bus. */
  static async connect(options: RedisBusOptions = {}): Promise<RedisBus> {
    if (options.clients) return new RedisBus(options, options.clients, false)
    const url = options.url ?? 'redis://127.0.0.1:6379'
    // Quick, capped retries once connected: a bus that waits long after Redis came back delays
    // recovery. Before the first connection, a few attempts only: a wrong URL fails `connect`.
    let connected = false
    const reconnectStrategy = (retries: number, cause: Error) => {
      if (!connected && retries >= 3) return cause
      return Math.min(50 * 2 ** retries, 1000)
    }
    const commands = createClient({ url, socket: { reconnectStrategy } })
    const subscriber = commands.duplicate()
    // Errors during reconnection are reported as events; without a listener they would crash.
    const onError = options.onError ?? (() => {})
    commands.on('error', onError)
    subscriber.on('error', onError)
    try {
      await Promise.all([commands.connect(), subscriber.connect()])
      connected = true
    } catch (error) {
      commands.destroy()
      subscriber.destroy()
      throw error
    }
    return new RedisBus(options, { commands, subscriber }, true)
  }

  private constructor(
    options: RedisBusOptions,
    clients: { readonly commands: RedisClientLike; readonly subscriber: RedisClientLike },
    ownsClients: boolean,
  ) {
    super(options)
    this.#commands = clients.commands
    this.#subscriber = clients.subscriber
    this.#ownsClients = ownsClients
    this.#prefix = options.prefix ?? 'rally'
    this.#sharded = options.sharded ?? false
    this.#metaTtl = options.metaTtl ?? 0
    const markDisconnected = () => {
      this.#disconnected = true
      this.#subscriptionsInPlace = false
      this.signalStatus('down')
    }
    this.#subscriber.on('end', markDisconnected)
    this.#subscriber.on('reconnecting', markDisconnected)
    // An error that leaves the connection serving (no 'ready' follows it) is not an outage.
    this.#subscriber.on('error', () => {
      if (!this.#subscriber.isReady) markDisconnected()
    })
    // Commands wait in the client's queue while it reconnects: publishing is down too.
    const commandsDown = () => this.signalStatus('down')
    this.#commands.on('end', commandsDown)
    this.#commands.on('reconnecting', commandsDown)
    this.#commands.on('ready', () => this.#reportStatusNow())
    // The client resubscribes every channel before it reports ready again, but a resubscription
    // answered with an error (a server still starting) makes it forget that channel for good. So
    // each subscription is asserted again — a no-op for a channel the client still holds — and
    // the gap is reported only once deliveries are in place on every channel.
    this.#subscriber.on('ready', () => {
      if (!this.#disconnected || this.#closed) return
      this.#disconnected = false
      void this.#resubscribeAll().then(() => {
        if (this.#closed || this.#disconnected) return
        this.#subscriptionsInPlace = true
        this.signalGap([...this.#publications.keys()])
        this.#reportStatusNow()
      })
    })
    this.#reportStatusNow()
  }

  /** Up when both connections serve and every subscription is in place again. */
  #reportStatusNow(): void {
    if (this.#closed) return
    const up = this.#commands.isReady && this.#subscriber.isReady && this.#subscriptionsInPlace
    this.signalStatus(up ? 'up' : 'down')
  }

  async #run(script: Script, keys: string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args]
    try {
      return await this.#commands.sendCommand(['EVALSHA', script.sha, ...tail])
    } catch (error) {
      // A restarted or flushed Redis has forgotten the script: send it whole once.
      if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error
      return this.#commands.sendCommand(['EVAL', script.source, ...tail])
    }
  }

  async publish(channel: string, request: contract.PublishRequest): Promise<contract.StreamPosition> {
    const history = request.history
    const keys = [
      tagged(this.#prefix, channel, 'meta'),
      tagged(this.#prefix, channel, 'stream'),
      tagged(this.#prefix, channel, 'pub'),
    ]
    // The id hashed: a key of fixed length whatever the id holds.
    if (request.id !== undefined) {
      const digest = createHash('sha256').update(request.id).digest('base64url')
      keys.push(tagged(this.#prefix, channel, `dedup:${digest}`))
    }
    const reply = (await this.#run(SCRIPTS.publish, keys, [
      newEpoch(),
      request.data,
      request.info ?? '',
      history === undefined ? '' : String(Math.max(0, Math.floor(history.size))),
      history === undefined ? '' : String(Math.max(0, Math.floor(history.ttl))),
      this.nodeId,
      String(this.#metaTtl),
      this.#sharded ? 'SPUBLISH' : 'PUBLISH',
      String(Math.ceil(this.dedupTtl)),
    ])) as [string, string, string, string]
    const position = { epoch: reply[0], offset: Number(reply[1]) }
    // A repeated id: the first publication was fanned out when it was made.
    if (reply[3] === '1') return position
    // This node's own subscribers get the publication now when it is the next one they expect;
    // its echo through Redis is then skipped by offset. When an earlier publication from another
    // node is still on its way, the echo delivers it in order instead.
    const last = this.#lastDelivered.get(channel)
    if (last !== undefined && last.epoch === position.epoch && last.offset === position.offset - 1) {
      this.#deliver(channel, {
        channel,
        ...position,
        time: Number(reply[2]),
        data: request.data,
        ...(request.info !== undefined && request.info !== '' ? { info: request.info } : {}),
      })
    }
    return position
  }

  /**
   * Delivers a publication to this node's receivers once: the offset already delivered in the
   * same epoch is skipped. Redis delivers a channel's messages in script order on one
   * connection, so offsets only grow within an epoch; after a flush the epoch differs and
   * delivery starts again from whatever offset arrives.
   */
  #deliver(channel: string, publication: contract.BusPublication): void {
    const fanout = this.#publications.get(channel)
    if (fanout === undefined) return
    const last = this.#lastDelivered.get(channel)
    if (last !== undefined && last.epoch === publication.epoch && publication.offset <= last.offset) return
    this.#lastDelivered.set(channel, { epoch: publication.epoch, offset: publication.offset })
    // A new epoch on a live connection (FLUSHALL, an expired meta hash): whatever this node's
    // subscribers hold belongs to the old history. The gap makes the real-time layer check.
    if (last !== undefined && last.epoch !== publication.epoch) this.signalGap([channel])
    handToAll(fanout.receivers, publication)
  }

  #parsePublication(channel: string, message: Buffer): contract.BusPublication | undefined {
    const newline = message.indexOf(10)
    if (newline < 0) return undefined
    const header = message.toString('latin1', 0, newline).split(' ')
    if (header.length !== 5) return undefined
    const [, offset, epoch, time, infoLength] = header as [string, string, string, string, string]
    const infoEnd = newline + 1 + Number(infoLength)
    const publication: contract.BusPublication = {
      channel,
      offset: Number(offset),
      epoch,
      time: Number(time),
      data: message.toString('utf8', infoEnd),
      ...(infoEnd > newline + 1 ? { info: message.toString('utf8', newline + 1, infoEnd) } : {}),
    }
    return publication
  }

  #subscribeCommand(channel: string, listener: RedisBufferListener): Promise<unknown> {
    return this.#sharded
      ? this.#subscriber.sSubscribe(channel, listener, true)
      : this.#subscriber.subscribe(channel, listener, true)
  }

  /** Subscribes every channel that has local receivers again; errors are left to the next reconnect. */
  async #resubscribeAll(): Promise<void> {
    const again: Promise<unknown>[] = []
    for (const [channel, fanout] of this.#publications)
      again.push(this.#subscribeCommand(tagged(this.#prefix, channel, 'pub'), fanout.listener))
    for (const [channel, fanout] of this.#events)
      again.push(this.#subscribeCommand(tagged(this.#prefix, channel, 'event'), fanout.listener))
    await Promise.allSettled(again)
  }

  #unsubscribeCommand(channel: string, listener: RedisBufferListener): Promise<unknown> {
    return this.#sharded
      ? this.#subscriber.sUnsubscribe(channel, listener, true)
      : this.#subscriber.unsubscribe(channel, listener, true)
  }

  /** Reference-counted pub/sub subscription shared by `subscribe` and `listen`. */
  async #attach<T>(
    table: Map<string, Fanout<T>>,
    channel: string,
    redisChannel: string,
    parse: (message: Buffer) => T | undefined,
    onMessage: (value: T) => void,
    receive: (value: T) => void,
  ): Promise<contract.Unsubscribe> {
    if (this.#closed) throw new Error('RedisBus is closed')
    let fanout = table.get(channel)
    if (fanout === undefined) {
      const listener: RedisBufferListener = (message) => {
        const value = parse(message)
        if (value !== undefined) onMessage(value)
      }
      const created: Fanout<T> = {
        receivers: new Set(),
        listener,
        ready: this.#subscribeCommand(redisChannel, listener),
      }
      fanout = created
      table.set(channel, created)
      created.ready.catch(() => {
        if (table.get(channel) === created) table.delete(channel)
      })
    }
    return joinFeed(table, channel, fanout, receive, async (released) => {
      if (table === (this.#publications as unknown)) this.#lastDelivered.delete(channel)
      if (!this.#closed) await this.#unsubscribeCommand(redisChannel, released.listener)
    })
  }

  subscribe(
    channel: string,
    deliver: (publication: contract.BusPublication) => void,
  ): Promise<contract.Unsubscribe> {
    return this.#attach(
      this.#publications,
      channel,
      tagged(this.#prefix, channel, 'pub'),
      (message) => this.#parsePublication(channel, message),
      (publication) => this.#deliver(channel, publication),
      deliver,
    )
  }

  async history(channel: string, query: contract.HistoryQuery): Promise<contract.HistoryResult> {
    const limit = Math.max(0, Math.min(query.limit ?? this.historyCap, this.historyCap))
    const reply = (await this.#run(
      SCRIPTS.history,
      [tagged(this.#prefix, channel, 'meta'), tagged(this.#prefix, channel, 'stream')],
      [newEpoch(), String(query.since?.offset ?? -1), query.since?.epoch ?? '', String(limit)],
    )) as string[]
    const epoch = reply[0]!
    const latest: contract.StreamPosition = { epoch, offset: Number(reply[1]) }
    const publications: contract.BusPublication[] = []
    for (let i = 2; i + 3 < reply.length; i += 4) {
      const info = reply[i + 3]!
      publications.push({
        channel,
        offset: Number(reply[i]),
        time: Number(reply[i + 1]),
        data: reply[i + 2]!,
        epoch,
        ...(info !== '' ? { info } : {}),
      })
    }
    if (query.since === undefined) return { publications, latest, complete: true }
    const since = query.since
    const first = publications[0]?.offset ?? latest.offset + 1
    const last = publications.at(-1)?.offset ?? since.offset
    const complete =
      since.epoch === epoch &&
      since.offset <= latest.offset &&
      first === since.offset + 1 &&
      last === latest.offset &&
      // Consecutive: a policy change may have left a publication out of the stream.
      publications.length === last - first + 1
    return { publications, latest, complete }
  }

  async emit(event: contract.BusEvent): Promise<void> {
    await this.#commands.sendCommand([
      this.#sharded ? 'SPUBLISH' : 'PUBLISH',
      tagged(this.#prefix, event.channel, 'event'),
      event.data,
    ])
  }

  listen(channel: string, receive: (event: contract.BusEvent) => void): Promise<contract.Unsubscribe> {
    return this.#attach(
      this.#events,
      channel,
      tagged(this.#prefix, channel, 'event'),
      (message) => ({ channel, data: message.toString('utf8') }),
      (event) => {
        handToAll(this.#events.get(channel)?.receivers ?? [], event)
      },
      receive,
    )
  }

  async join(channel: string, member: contract.PresenceMember): Promise<void> {
    const json = JSON.stringify({ client: member.client, user: member.user, info: member.info })
    let local = this.#members.get(channel)
    if (local === undefined) this.#members.set(channel, (local = new Map()))
    local.set(member.client, json)
    await this.#run(
      SCRIPTS.presenceRefresh,
      [tagged(this.#prefix, channel, 'presence'), tagged(this.#prefix, channel, 'presence-expiry')],
      [String(this.presenceTtl), member.client, json],
    )
  }

  async leave(channel: string, client: string): Promise<void> {
    const local = this.#members.get(channel)
    local?.delete(client)
    if (local?.size === 0) this.#members.delete(channel)
    await this.#commands.sendCommand(['HDEL', tagged(this.#prefix, channel, 'presence'), client])
    await this.#commands.sendCommand(['ZREM', tagged(this.#prefix, channel, 'presence-expiry'), client])
  }

  async members(channel: string): Promise<readonly contract.PresenceMember[]> {
    const values = (await this.#run(
      SCRIPTS.presenceRead,
      [tagged(this.#prefix, channel, 'presence'), tagged(this.#prefix, channel, 'presence-expiry')],
      ['list'],
    )) as string[]
    return values.map((value) => JSON.parse(value) as contract.PresenceMember)
  }

  async memberCount(channel: string): Promise<number> {
    return Number(
      await this.#run(
        SCRIPTS.presenceRead,
        [tagged(this.#prefix, channel, 'presence'), tagged(this.#prefix, channel, 'presence-expiry')],
        ['count'],
      ),
    )
  }

  /** Re-sends this node's members with a fresh expiry (also restores them after a Redis flush). */
  protected refreshPresence(): void {
    if (this.#closed || !this.#commands.isReady) return
    for (const [channel, local] of this.#members) {
      const args = [String(this.presenceTtl)]
      for (const [client, json] of local) args.push(client, json)
      this.#run(
        SCRIPTS.presenceRefresh,
        [tagged(this.#prefix, channel, 'presence'), tagged(this.#prefix, channel, 'presence-expiry')],
        args,
      ).catch(() => {
        // The next refresh tries again; a member expires only after three missed refreshes.
      })
    }
  }

  /**
   * Stops refreshing presence and releases the connections (when the bus made them). Members
   * joined through this node are not removed: the real-time layer makes its sessions leave on a
   * graceful shutdown; after a crash they expire, and `close` behaves the same way.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.stopBase()
    // Clients of the caller's stay open: leave nothing subscribed on them.
    const releases = this.#ownsClients
      ? []
      : [
          ...[...this.#publications].map(([channel, fanout]) =>
            this.#unsubscribeCommand(tagged(this.#prefix, channel, 'pub'), fanout.listener),
          ),
          ...[...this.#events].map(([channel, fanout]) =>
            this.#unsubscribeCommand(tagged(this.#prefix, channel, 'event'), fanout.listener),
          ),
        ]
    this.#publications.clear()
    this.#events.clear()
    await Promise.allSettled(releases)
    if (this.#ownsClients) await Promise.allSettled([this.#commands.close(), this.#subscriber.close()])
  }
}
