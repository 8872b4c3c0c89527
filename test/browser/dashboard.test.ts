/**
 * The live dashboard in Chromium: the page follows its node's metrics channel on the realtime
 * layer, and its uPlot charts get points on a time axis — sessions by transport (a second page
 * forced onto SSE shows up as such), publications and deliveries, bytes, the event loop, memory
 * and per-channel subscribers. At phone width nothing scrolls sideways; while the connection is
 * down the figures are dimmed, and they come back to life with it. No console errors.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { type Demo, startDemo } from '../../src/demo/server.js'
import {
  assertChromium,
  assertNoHorizontalScroll,
  bounded,
  CHROMIUM,
  CHROMIUM_ARGS,
  collectErrors,
  PHONE,
} from './browser-support.js'

/** What the page exposes as window.dashboardCharts: uPlot's columns per chart (times first). */
type Columns = (number | null)[][]

describe('live dashboard in Chromium', { timeout: 120_000 }, () => {
  let browser: Browser
  let demo: Demo
  const contexts: BrowserContext[] = []

  before(async () => {
    assertChromium()
    // Samples four times a second, so that the charts fill within the test's waits.
    demo = await startDemo({ port: 0, host: '127.0.0.1', statsInterval: 250 })
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  })

  after(async () => {
    for (const context of contexts) await bounded(context.close(), 5000)
    await bounded(browser?.close(), 10_000)
    await bounded(demo?.close(), 10_000)
  })

  async function open(query = '', context?: BrowserContext): Promise<{ page: Page; errors: string[] }> {
    if (context === undefined) {
      context = await browser.newContext({ viewport: PHONE })
      contexts.push(context)
    }
    const page = await context.newPage()
    const errors = collectErrors(page)
    await page.goto(`http://127.0.0.1:${demo.port}/dashboard.html${query}`)
    await page.waitForSelector('body[data-connection="connected"][data-subscribed="true"]', {
      timeout: 15_000,
    })
    return { page, errors }
  }

  function columns(page: Page, chart: string): Promise<Columns> {
    return page.evaluate(`window.dashboardCharts[${JSON.stringify(chart)}].data`) as Promise<Columns>
  }

  function labels(page: Page, chart: string): Promise<string[]> {
    return page.evaluate(
      `window.dashboardCharts[${JSON.stringify(chart)}].series.map((line) => line.label)`,
    ) as Promise<string[]>
  }

  /** Waits until the page has charted `count` samples more than it had. */
  async function morePoints(page: Page, count: number): Promise<void> {
    const now = Number(await page.evaluate('document.body.dataset.points ?? 0'))
    await page.waitForFunction(`Number(document.body.dataset.points) >= ${now + count}`, undefined, {
      timeout: 15_000,
    })
  }

  it('charts every figure on a time axis, sessions by transport included', async () => {
    const { page, errors } = await open()
    assert.equal(await page.locator('#transport').textContent(), 'websocket')
    // A second page forced onto SSE: a session of that transport on the server and on the chart.
    const sse = await open('?transport=sse')
    assert.equal(await sse.page.locator('#transport').textContent(), 'sse')
    await page.waitForFunction(
      "(() => { const d = window.dashboardCharts.sessions; const i = d.series.findIndex((l) => l.label === 'sse'); return d.data[i + 1].at(-1) >= 1 })()",
      undefined,
      { timeout: 15_000 },
    )
    await morePoints(page, 3)

    const sessions = await columns(page, 'sessions')
    const names = await labels(page, 'sessions')
    const last = (name: string) => sessions[names.indexOf(name) + 1]!.at(-1)!
    assert.ok(last('websocket')! >= 1, `websocket sessions charted: ${last('websocket')}`)
    assert.ok(last('sse')! >= 1, `sse sessions charted: ${last('sse')}`)
    assert.ok(last('TCP connections')! >= 2, `connections charted: ${last('TCP connections')}`)

    // The x values are the samples' times in seconds, increasing, close to now.
    const times = sessions[0] as number[]
    const nowSeconds = Date.now() / 1000
    assert.ok(times.length >= 3)
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! > times[i - 1]!, `times increase: ${times}`)
    assert.ok(Math.abs(times.at(-1)! - nowSeconds) < 60, `last point at ${times.at(-1)}, now ${nowSeconds}`)

    // Publications: the metrics samples themselves (4 a second); deliveries: to both pages.
    const messages = await columns(page, 'messages')
    assert.ok(Math.max(...(messages[1] as number[])) > 0, `publications/s: ${messages[1]}`)
    assert.ok(Math.max(...(messages[2] as number[])) > 0, `deliveries/s: ${messages[2]}`)
    const bytes = await columns(page, 'bytes')
    assert.ok(Math.max(...(bytes[2] as number[])) > 0, `bytes out/s: ${bytes[2]}`)
    const loop = await columns(page, 'loop')
    assert.ok(
      (loop[3] as number[]).every((ratio) => ratio >= 0 && ratio <= 1),
      `utilisation: ${loop[3]}`,
    )
    const memory = await columns(page, 'memory')
    assert.ok((memory[1] as number[]).at(-1)! > 10 * 1024 * 1024, `rss: ${memory[1]}`)
    // The metrics channel is one of the channels charted, with both pages subscribed.
    const channelNames = await labels(page, 'channels')
    const channel = `metrics:${demo.metrics.bus.nodeId}`
    assert.ok(channelNames.includes(channel), `channels charted: ${channelNames}`)
    await page.waitForFunction(
      `(() => { const d = window.dashboardCharts.channels; const i = d.series.findIndex((l) => l.label === ${JSON.stringify(channel)}); return d.data[i + 1].at(-1) >= 2 })()`,
      undefined,
      { timeout: 15_000 },
    )

    // Six uPlot charts, each with a time axis that has tick labels.
    assert.equal(await page.locator('.chart .uplot canvas').count(), 6)
    // uPlot draws axes on its canvas; the labels it drew stay on each axis as `_values`. A span
    // of a few seconds can hold a single tick boundary: wait for the samples that make a second.
    const ticksDrawn = 'window.dashboardCharts.messages.plot.axes[0]._values ?? []'
    await page.waitForFunction(`(${ticksDrawn}).length >= 2`, undefined, { timeout: 20_000 }).catch(() => {})
    const xTicks = (await page.evaluate(ticksDrawn)) as string[]
    assert.ok(xTicks.length >= 2, `time ticks: ${xTicks}`)
    assert.ok(
      xTicks.some((tick) => /\d:\d\d/.test(tick)),
      `time ticks read as times of day: ${xTicks}`,
    )
    await assertNoHorizontalScroll(page)
    const widest = (await page.evaluate(
      "Math.max(...[...document.querySelectorAll('.chart .uplot')].map((e) => e.getBoundingClientRect().right))",
    )) as number
    assert.ok(widest <= PHONE.width, `a chart ends at ${widest} px in a ${PHONE.width} px viewport`)
    assert.deepEqual([...errors, ...sse.errors], [])
  })

  it('a page opened later draws the recent history at once', async () => {
    const { page, errors } = await open('', undefined)
    // Straight from the channel's history: several points before the next sample could bring them.
    const points = Number(await page.evaluate('document.body.dataset.points'))
    assert.ok(points >= 3, `points from history: ${points}`)
    assert.deepEqual(errors, [])
  })

  it('dims the figures while disconnected and brings them back with the connection', async () => {
    // The page's WebSockets pass through a gate the test holds (as in live-chat.test.ts).
    let gateOpen = true
    const context = await browser.newContext({ viewport: PHONE })
    contexts.push(context)
    await context.routeWebSocket(/\/rt$/, (route) => {
      if (gateOpen) route.connectToServer()
      else route.close({ code: 1013, reason: 'held by the test' })
    })
    const { page, errors } = await open('', context)
    assert.equal(await page.locator('#charts.stale').count(), 0)

    gateOpen = false
    const client = (await page.evaluate('window.rallyClient.clientId')) as string
    assert.ok(demo.live.realtime.disconnect(client, 4008, 'cut by the test'))
    await page.waitForSelector('body:not([data-connection="connected"]) #charts.stale', { timeout: 10_000 })
    assert.equal(await page.locator('#figures.stale').count(), 1)

    gateOpen = true
    await page.evaluate("window.dispatchEvent(new Event('online'))")
    await page.waitForSelector('body[data-connection="connected"]', { timeout: 15_000 })
    assert.equal(await page.locator('#charts.stale').count(), 0)
    await morePoints(page, 2)
    await assertNoHorizontalScroll(page)
    assert.deepEqual(errors, [])
  })
})
