/**
 * Topics: exact strings, no wildcards (uWebSockets removed its wildcards after they caused
 * hangs). A two-way index — topic to subscribers here, subscriber to topics in each subscriber —
 * so that subscribe, unsubscribe and a subscriber leaving cost O(1) per topic.
 */
export class TopicRegistry<Subscriber> {
  private readonly topics = new Map<string, Set<Subscriber>>()

  /** Adds `subscriber` to `topic`; `own` is the subscriber's own set of topics. */
  subscribe(subscriber: Subscriber, own: Set<string>, topic: string): boolean {
    if (own.has(topic)) return false
    own.add(topic)
    let set = this.topics.get(topic)
    if (set === undefined) {
      set = new Set()
      this.topics.set(topic, set)
    }
    set.add(subscriber)
    return true
  }

  unsubscribe(subscriber: Subscriber, own: Set<string>, topic: string): boolean {
    if (!own.delete(topic)) return false
    this.removeFrom(topic, subscriber)
    return true
  }

  /** Removes a subscriber from all its topics (when its connection closes). */
  unsubscribeAll(subscriber: Subscriber, own: Set<string>): void {
    for (const topic of own) this.removeFrom(topic, subscriber)
    own.clear()
  }

  subscribers(topic: string): ReadonlySet<Subscriber> | undefined {
    return this.topics.get(topic)
  }

  count(topic: string): number {
    return this.topics.get(topic)?.size ?? 0
  }

  /** Number of topics with at least one subscriber. */
  get size(): number {
    return this.topics.size
  }

  private removeFrom(topic: string, subscriber: Subscriber): void {
    const set = this.topics.get(topic)
    if (set === undefined) return
    set.delete(subscriber)
    // Empty topics are dropped, so the index never outgrows the live subscriptions.
    if (set.size === 0) this.topics.delete(topic)
  }
}
