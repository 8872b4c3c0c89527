/**
 * The alternatives compared live, in Chromium: the page's four lanes (plain polling, long
 * polling, SSE, WebSocket) each receive the server's stream over their own transport and show a
 * latency and bytes on the wire per message, counted by the server on its sockets. The figures
 * bear out the primer's comparison where it does not depend on timing: polling and long polling
 * send a request with headers upstream for every answer, SSE and WebSocket nothing but the
 * heartbeat's answers; a long poll answers about one message per response, each with its
 * headers, which a WebSocket frames in a few bytes. (Plain polling at one request a second
 * batches two messages per answer here, so its downstream bytes per message come close to the
 * WebSocket's: the price is latency, which is shown, not asserted.)
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { assertNoHorizontalScroll, collectErrors, demoInChromium, PHONE } from './browser-support.js'

const LANES = ['polling', 'long-polling', 'sse', 'websocket'] as const
/** Messages each lane must have measured before the figures are read. */
const MEASURED = 6

describe('the alternatives compared live in Chromium', { timeout: 240_000 }, () => {
  const setup = demoInChromium()

  it('answers 400 to a bad poll position or viewer id', async () => {
    const base = `http://127.0.0.1:${setup.demo.port}/compare`
    const poll = await fetch(`${base}/poll?after=-1`)
    assert.equal(poll.status, 400)
    assert.match(((await poll.json()) as { error: string }).error, /after/)
    const bytes = await fetch(`${base}/bytes?viewer=x`)
    assert.equal(bytes.status, 400)
    assert.match(((await bytes.json()) as { error: string }).error, /viewer/)
  })

  async function figure(page: Page, lane: string, name: string): Promise<string> {
    return (await page.locator(`[data-lane="${lane}"] dd[data-figure="${name}"]`).textContent()) ?? ''
  }

  /** "123 B" or "1.5 KiB" in bytes. */
  function bytes(text: string): number {
    const match = /^([\d.]+) (B|KiB)$/.exec(text)
    assert.ok(match !== null, `"${text}" is not a byte count`)
    return Number(match[1]) * (match[2] === 'KiB' ? 1024 : 1)
  }

  it('four lanes, each on its own transport, receive the stream and show latency and bytes per message', async () => {
    const context = await setup.browser.newContext({ viewport: PHONE })
    const page = await context.newPage()
    const errors = collectErrors(page)
    await page.goto(`http://127.0.0.1:${setup.demo.port}/alternatives.html`)
    await page.waitForSelector('body[data-connection="connected"]', { timeout: 30_000 })
    for (const lane of LANES) {
      await page.waitForFunction(
        `(() => {
          const lane = document.querySelector('[data-lane="${lane}"]')
          return lane.dataset.measured === 'true' && Number(lane.dataset.received) >= ${MEASURED}
        })()`,
        undefined,
        { timeout: 60_000 },
      )
    }
    const figures: Record<string, { down: number; up: number }> = {}
    for (const lane of LANES) {
      assert.equal(await figure(page, lane, 'transport'), lane)
      assert.match(await figure(page, lane, 'latency p50'), /^\d+ ms$/)
      assert.match(await figure(page, lane, 'latency p95'), /^\d+ ms$/)
      figures[lane] = {
        down: bytes(await figure(page, lane, 'bytes/msg ↓')),
        up: bytes(await figure(page, lane, 'bytes/msg ↑')),
      }
      assert.ok(figures[lane]!.down > 0, `${lane} carried its messages`)
    }
    const all = JSON.stringify(figures)
    assert.ok(figures.websocket!.up < figures.polling!.up, all)
    assert.ok(figures.sse!.up < figures['long-polling']!.up, all)
    assert.ok(figures.websocket!.down < figures['long-polling']!.down, all)

    await assertNoHorizontalScroll(page)
    assert.deepEqual(errors, [])
    await context.close()
  })
})
