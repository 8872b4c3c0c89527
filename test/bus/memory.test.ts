// The bus conformance suite against MemoryBus, the embedded default: one process, so the tests
// that need a shared broker (two nodes, broker flush and restart, subscriptions counted on the
// broker) are skipped, and a new instance stands for a restarted process (a new epoch).
import { MemoryBus } from '../../src/pubsub/memory-bus.js'
import { busConformance } from './conformance.js'

busConformance({
  name: 'MemoryBus',
  shared: false,
  createBus: async (options) => new MemoryBus(options),
})
