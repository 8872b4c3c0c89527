/** What the demo's browser tests share: Chromium (Debian's, through playwright-core) and checks. */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { type Demo, type DemoOptions, startDemo } from '../../src/demo/server.js'
import { closeAllClients } from '../realtime/client-helpers.js'

export const CHROMIUM = '/usr/bin/chromium'
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** A phone's viewport, the narrowest the demo's pages must fit. */
export const PHONE = { width: 390, height: 844 }

export function assertChromium(): void {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: the test set-up (scripts/ensure-system-deps.mjs) installs it`,
  )
}

/** Headless Chromium with the suites' flags and `extra` ones, once it is known to be installed. */
export function launchChromium(extra: readonly string[] = []): Promise<Browser> {
  assertChromium()
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extra] })
}

/** The demo on a free port of 127.0.0.1, its dashboard quiet, with a known notify token. */
export function startTestDemo(options: DemoOptions = {}): Promise<Demo> {
  return startDemo({
    port: 0,
    host: '127.0.0.1',
    statsInterval: 60_000,
    notifyToken: 'test-token',
    ...options,
  })
}

/** A suite's demo and browser; a test may replace `demo` (a restart): the current one is closed. */
export interface DemoInChromium {
  demo: Demo
  browser: Browser
}

/** Starts the demo and Chromium before the suite's tests, and closes both (and Node clients) after. */
export function demoInChromium(chromiumFlags: readonly string[] = []): DemoInChromium {
  const setup = {} as DemoInChromium
  before(async () => {
    setup.demo = await startTestDemo()
    setup.browser = await launchChromium(chromiumFlags)
  })
  after(async () => {
    closeAllClients()
    await bounded(setup.browser?.close(), 10_000)
    await bounded(setup.demo?.close(), 10_000)
  })
  return setup
}

/** Resolves when `promise` does, or after `ms` — so that a wedged browser cannot hang the run. */
export function bounded(promise: Promise<unknown> | undefined, ms: number): Promise<unknown> {
  return Promise.race([promise, new Promise((resolve) => setTimeout(resolve, ms).unref())])
}

/** Console errors and uncaught exceptions of a page, collected from its opening. */
export function collectErrors(page: Page): string[] {
  const errors: string[] = []
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text())
  })
  page.on('pageerror', (error) => errors.push(error.message))
  return errors
}

/** Nothing wider than the viewport: no horizontal scrolling. */
export async function assertNoHorizontalScroll(page: Page): Promise<void> {
  // A string: it runs in the page, which has a DOM; this file does not.
  const widths = (await page.evaluate(
    '({ scroll: document.documentElement.scrollWidth, viewport: window.innerWidth })',
  )) as { scroll: number; viewport: number }
  assert.ok(
    widths.scroll <= widths.viewport,
    `page is ${widths.scroll} px wide in a ${widths.viewport} px viewport`,
  )
}
