/**
 * One channel subscription of a RallyClient. It outlives connections: after a reconnection the
 * client subscribes again from the last position seen (`since: { offset, epoch }`), and the
 * server answers with what was missed (`recovered: true`) or says it cannot (`recovered: false`:
 * the app should refetch its state). Publications are delivered in offset order, at most once:
 * a repeated offset is dropped, and a hole in the offsets makes the subscription resynchronise
 * from history rather than deliver past it.
 */
import type {
  HistoryResult,
  JoinPush,
  LeavePush,
  Member,
  PresenceCountResult,
  PresenceResult,
  Pub,
  PublishResult,
  StreamPosition,
  SubscribeResult,
  UnsubscribedPush,
} from '../protocol.js'
import { Emitter } from './emitter.js'
import type { RallyError } from './errors.js'

export type SubscriptionState = 'unsubscribed' | 'subscribing' | 'subscribed'

export interface SubscribedEvent {
  channel: string
  /**
   * True when every publication missed while disconnected was delivered (they follow this event).
   * False on a first subscription and whenever history could not cover the gap or the channel's
   * epoch changed: the app should then refetch whatever state it builds from the channel.
   */
  recovered: boolean
  /** The subscription asked to recover from a previous position. */
  wasRecovering: boolean
  /** The channel's position once subscribed. */
  offset: number
  epoch: string
}

export interface SubscriptionEvents<Data> {
  /** A publication, in offset order, never twice. */
  publication: Pub<Data>
  subscribed: SubscribedEvent
  /** The subscription is (re)subscribing: after a disconnection, or to close a hole in offsets. */
  subscribing: { channel: string; reason: string }
  /** The subscription ended: unsubscribe(), a refusal by the server, or a server-side unsubscribe. */
  unsubscribed: { channel: string; code: number; reason: string }
  join: Member
  leave: Member
  /** A subscribe refused by the server (permission, unknown channel…): `unsubscribed` follows. */
  error: { channel: string; error: RallyError }
}

export interface SubscriptionOptions {
  /** Resubscribe from the last position after a reconnection. Default true. */
  recover?: boolean
  /** Ask for join and leave pushes (the channel needs presence). Default false. */
  joinLeave?: boolean
}

export interface CallOptions {
  /** Milliseconds for the whole call, waiting for a connection included. */
  timeout?: number
}

/** Most publications held while a subscribe's reply is awaited (the server sends none then). */
const MAX_HELD_WHILE_SUBSCRIBING = 10_000

/** What a subscription needs from its client (kept off the public surface). */
export interface SubscriptionHost {
  sendSubscribe(subscription: Subscription<unknown>): void
  sendUnsubscribe(channel: string): void
  /** Unsubscribe then subscribe again from the current position (to close a hole). */
  resync(subscription: Subscription<unknown>): void
  retrySubscribeLater(subscription: Subscription<unknown>): void
  forget(subscription: Subscription<unknown>): void
  publish(channel: string, data: unknown, options?: CallOptions): Promise<PublishResult>
  read<Result>(body: Record<string, unknown>, options?: CallOptions): Promise<Result>
  isConnected(): boolean
}

export class Subscription<Data = unknown> extends Emitter<SubscriptionEvents<Data>> {
  readonly channel: string
  private _state: SubscriptionState = 'unsubscribed'
  /** The app wants this subscription (until unsubscribe() or a refusal). */
  private wanted = false
  /** The last publication delivered (or the position at subscribe time). */
  private position: StreamPosition | undefined
  /** A subscribe command is on the wire, awaiting its reply. */
  private awaitingReply = false
  /**
   * @internal Subscribe commands sent so far. Only the reply to the latest counts: a resync
   * (unsubscribe, then subscribe) overtakes one in flight, which the server then ends with an
   * error that is no refusal.
   */
  subscribeAttempts = 0
  private held: Pub[] = []
  private readonly recover: boolean
  readonly joinLeave: boolean
  /** Publications dropped because their offset was already delivered (defensive de-duplication). */
  duplicatesDropped = 0
  /** Times a hole in offsets made the subscription resynchronise. */
  resyncs = 0

  constructor(
    private readonly host: SubscriptionHost,
    channel: string,
    options: SubscriptionOptions = {},
  ) {
    super()
    this.channel = channel
    this.recover = options.recover ?? true
    this.joinLeave = options.joinLeave ?? false
  }

  get state(): SubscriptionState {
    return this._state
  }

  /** The last position delivered: what a recovery starts from. */
  get lastPosition(): StreamPosition | undefined {
    return this.position === undefined ? undefined : { ...this.position }
  }

  /** Subscribes (now if connected, else as soon as the client is). Idempotent. */
  subscribe(): void {
    if (this.wanted) return
    this.wanted = true
    this.setSubscribing('subscribe')
    if (this.host.isConnected()) this.host.sendSubscribe(this as Subscription<unknown>)
  }

  /** Unsubscribes and forgets the subscription (channel() creates a new one afterwards). */
  unsubscribe(): void {
    const wasSubscribed = this.wanted && this.host.isConnected() && this._state !== 'unsubscribed'
    this.wanted = false
    this.awaitingReply = false
    this.held = []
    if (wasSubscribed) this.host.sendUnsubscribe(this.channel)
    this.host.forget(this as Subscription<unknown>)
    if (this._state !== 'unsubscribed') {
      this._state = 'unsubscribed'
      this.emit('unsubscribed', { channel: this.channel, code: 0, reason: 'unsubscribe called' })
    }
  }

  /** Publishes to this channel (no subscription needed); resolves with the offset. */
  publish(data: Data, options?: CallOptions): Promise<PublishResult> {
    return this.host.publish(this.channel, data, options)
  }

  presence(options?: CallOptions): Promise<Member[]> {
    return this.host
      .read<PresenceResult>({ cmd: 'presence', channel: this.channel }, options)
      .then((result) => result.members)
  }

  presenceCount(options?: CallOptions): Promise<number> {
    return this.host
      .read<PresenceCountResult>({ cmd: 'presence_count', channel: this.channel }, options)
      .then((result) => result.count)
  }

  history(
    query: { since?: StreamPosition; limit?: number } = {},
    options?: CallOptions,
  ): Promise<HistoryResult> {
    return this.host.read<HistoryResult>({ cmd: 'history', channel: this.channel, ...query }, options)
  }

  // ------------------------------------------------------------------ driven by the client

  /** @internal Whether the client should subscribe this one on (re)connection. */
  get isWanted(): boolean {
    return this.wanted
  }

  /** @internal The subscribe command's fields; marks the reply as awaited. */
  subscribeCommand(): { channel: string; since?: StreamPosition; joinLeave?: boolean } {
    this.subscribeAttempts++
    this.awaitingReply = true
    this.held = []
    const command: { channel: string; since?: StreamPosition; joinLeave?: boolean } = {
      channel: this.channel,
    }
    if (this.recover && this.position !== undefined) command.since = { ...this.position }
    if (this.joinLeave) command.joinLeave = true
    return command
  }

  /** @internal The connection dropped: resubscribe on the next one, from the same position. */
  connectionLost(reason: string): void {
    this.awaitingReply = false
    this.held = []
    if (this.wanted) this.setSubscribing(reason)
  }

  /** @internal The subscribe reply, with the position it asked to recover from. */
  subscribed(result: SubscribeResult, since: StreamPosition | undefined): void {
    if (!this.wanted) return
    this.awaitingReply = false
    this._state = 'subscribed'
    const recovered = since !== undefined && result.recovered === true && result.epoch === since.epoch
    const missed = recovered ? (result.publications ?? []) : []
    if (!recovered) this.position = { offset: result.offset, epoch: result.epoch }
    this.emit('subscribed', {
      channel: this.channel,
      recovered,
      wasRecovering: since !== undefined,
      offset: result.offset,
      epoch: result.epoch,
    })
    for (const pub of missed) {
      if (this._state !== 'subscribed') return
      this.deliver(pub)
    }
    if (recovered && this._state === 'subscribed') {
      // The reply's position follows the recovered publications; move there if history had none.
      const position = this.position
      if (position === undefined || position.offset < result.offset) {
        this.position = { offset: result.offset, epoch: result.epoch }
      }
    }
    const held = this.held
    this.held = []
    for (const pub of held) {
      if (this._state !== 'subscribed') break
      this.deliver(pub)
    }
  }

  /** @internal A refused subscribe: stop, tell the app. Temporary errors are retried. */
  refused(error: RallyError): void {
    this.awaitingReply = false
    if (!this.wanted) return
    if (error.temporary) {
      this.host.retrySubscribeLater(this as Subscription<unknown>)
      return
    }
    this.wanted = false
    this._state = 'unsubscribed'
    this.host.forget(this as Subscription<unknown>)
    this.emit('error', { channel: this.channel, error })
    this.emit('unsubscribed', { channel: this.channel, code: error.code, reason: error.message })
  }

  /** @internal A `pub` push for this channel. */
  publication(pub: Pub): void {
    if (!this.wanted) return
    if (this._state === 'subscribing') {
      // The server sends a channel's publications only after the subscribe reply; anything
      // earlier is held (bounded) and merged after it, de-duplicated by offset.
      if (this.awaitingReply && this.held.length < MAX_HELD_WHILE_SUBSCRIBING) this.held.push(pub)
      return
    }
    if (this._state === 'subscribed') this.deliver(pub)
  }

  /** @internal */
  join(push: JoinPush): void {
    if (this._state === 'subscribed') this.emit('join', push.member)
  }

  /** @internal */
  leave(push: LeavePush): void {
    if (this._state === 'subscribed') this.emit('leave', push.member)
  }

  /** @internal The server ended the subscription. */
  serverUnsubscribed(push: UnsubscribedPush): void {
    if (!this.wanted) return
    if (push.resubscribe === true) {
      this.setSubscribing(`server unsubscribed: ${push.reason}`)
      this.host.resync(this as Subscription<unknown>)
      return
    }
    this.wanted = false
    this._state = 'unsubscribed'
    this.host.forget(this as Subscription<unknown>)
    this.emit('unsubscribed', { channel: this.channel, code: push.code, reason: push.reason })
  }

  // ------------------------------------------------------------------ delivery

  private deliver(pub: Pub): void {
    const position = this.position
    if (position !== undefined && pub.epoch === position.epoch) {
      if (pub.offset <= position.offset) {
        this.duplicatesDropped++
        return
      }
      if (pub.offset > position.offset + 1) {
        // A hole: never deliver past it. Recover from the last offset delivered instead.
        this.startResync(`missed offsets ${position.offset + 1}..${pub.offset - 1}`)
        return
      }
    } else if (position !== undefined) {
      // A new epoch while subscribed: the channel's history was lost; resubscribing reports it
      // (recovered: false) so that the app refetches.
      this.startResync(`epoch changed from ${position.epoch} to ${pub.epoch}`)
      return
    }
    this.position = { offset: pub.offset, epoch: pub.epoch }
    this.emit('publication', pub as Pub<Data>)
  }

  private startResync(reason: string): void {
    this.resyncs++
    this.setSubscribing(reason)
    if (this.host.isConnected()) this.host.resync(this as Subscription<unknown>)
  }

  private setSubscribing(reason: string): void {
    if (this._state === 'subscribing') return
    this._state = 'subscribing'
    this.emit('subscribing', { channel: this.channel, reason })
  }
}
