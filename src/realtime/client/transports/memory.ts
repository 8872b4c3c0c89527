/**
 * Which transport worked for an origin, remembered for a while so that the next page load (or
 * the next client) starts with it instead of waiting out the failures before it: in browser
 * storage when there is one (localStorage), else in this module for the process's lifetime.
 */

/** How long a remembered transport is trusted (a network's proxies may change). */
export const TRANSPORT_MEMORY_TTL = 24 * 60 * 60 * 1000

const KEY_PREFIX = 'rally.transport:'

interface StorageLike {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
}

const inProcess = new Map<string, string>()

function storage(): StorageLike | undefined {
  try {
    // Reading localStorage throws in some sandboxed frames and with storage disabled.
    const candidate = (globalThis as { localStorage?: StorageLike }).localStorage
    return candidate !== undefined && typeof candidate.getItem === 'function' ? candidate : undefined
  } catch {
    return undefined
  }
}

function originOf(url: string): string {
  try {
    const parsed = new URL(url)
    const scheme = parsed.protocol.replace(/^ws/, 'http')
    return `${scheme}//${parsed.host}${parsed.pathname}`
  } catch {
    return url
  }
}

export function rememberTransport(url: string, name: string, now = Date.now()): void {
  const key = KEY_PREFIX + originOf(url)
  const value = JSON.stringify({ name, at: now })
  inProcess.set(key, value)
  try {
    storage()?.setItem(key, value)
  } catch {
    // Full or disabled storage: the in-process memory still serves this page.
  }
}

/** The transport that last worked for this URL's origin and path, if recent enough. */
export function rememberedTransport(url: string, now = Date.now()): string | undefined {
  const key = KEY_PREFIX + originOf(url)
  let value: string | null | undefined
  try {
    value = storage()?.getItem(key)
  } catch {
    value = undefined
  }
  value ??= inProcess.get(key)
  if (value == null) return undefined
  try {
    const parsed = JSON.parse(value) as { name?: unknown; at?: unknown }
    if (typeof parsed.name !== 'string' || typeof parsed.at !== 'number') return undefined
    return now - parsed.at < TRANSPORT_MEMORY_TTL ? parsed.name : undefined
  } catch {
    return undefined
  }
}

/** Forgets every remembered transport of this process (tests). */
export function forgetTransports(): void {
  inProcess.clear()
}
