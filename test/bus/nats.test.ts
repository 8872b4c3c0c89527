// The bus conformance suite against NatsBus on a real nats-server with JetStream (file storage in
// a temporary directory) started on a free port. A restart keeps the streams (the same epochs:
// recovery covers the outage); losing the history is a restart from an empty store (new epochs).
import { NatsBus } from '../../src/adapters/nats/index.js'
import { type Broker, startNats } from '../support/brokers.js'
import { busConformance } from './conformance.js'

let nats: Broker | undefined

busConformance({
  name: 'NatsBus',
  shared: true,
  async setUp() {
    nats = await startNats()
  },
  async tearDown() {
    await nats?.stop()
  },
  createBus: (options) =>
    NatsBus.connect({
      servers: nats!.url,
      fillDelay: 100,
      ...(options?.presenceTtl ? { presenceTtl: options.presenceTtl } : {}),
    }),
  async loseHistory() {
    await nats!.restart({ wipe: true })
  },
  async restartBroker() {
    await nats!.restart()
  },
  async brokerSubscriptions(channel) {
    // The server's own count of subscriptions on the channel's fan-out subject (all clients).
    const response = await fetch(`${nats!.monitorUrl}/subsz?subs=1&test=rally.p.${channel}`)
    const body = (await response.json()) as { subscriptions_list?: { subject: string }[] }
    return (body.subscriptions_list ?? []).filter((sub) => sub.subject === `rally.p.${channel}`).length
  },
})
