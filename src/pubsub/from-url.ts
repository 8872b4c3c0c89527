/**
 * `busFromUrl`: the cluster bus a URL names — `redis://` or `rediss://` for a RedisBus,
 * `nats://` or `tls://` for a NatsBus. The broker adapters are imported only when asked for, so
 * that their client packages (optional peer dependencies) are needed only by those who use them.
 */
import type { Bus } from './bus.js'
import type { BrokerBusOptions } from './bus-support.js'

/** The schemes `busFromUrl` knows, and which bus each one means. */
const SCHEMES: Readonly<Record<string, 'redis' | 'nats'>> = {
  'redis:': 'redis',
  'rediss:': 'redis',
  'nats:': 'nats',
  'tls:': 'nats',
}

/** Which bus a URL names, or a RangeError saying what was expected. */
export function busKindOf(url: string): 'redis' | 'nats' {
  let scheme: string
  try {
    scheme = new URL(url).protocol
  } catch {
    throw new RangeError(`busFromUrl: not a URL: ${JSON.stringify(url)}`)
  }
  const kind = SCHEMES[scheme]
  if (kind === undefined)
    throw new RangeError(
      `busFromUrl: ${scheme} is not a broker scheme (redis://, rediss://, nats:// or tls://)`,
    )
  return kind
}

/**
 * Connects a RedisBus or a NatsBus to `url` (see busKindOf) with `options`; rejects when the
 * broker cannot be reached or its client package is not installed.
 */
export async function busFromUrl(url: string, options: BrokerBusOptions = {}): Promise<Bus> {
  if (busKindOf(url) === 'redis') {
    const { RedisBus } = await import('../adapters/redis/index.js')
    return RedisBus.connect({ ...options, url })
  }
  const { NatsBus } = await import('../adapters/nats/index.js')
  return NatsBus.connect({ ...options, servers: url })
}
