/**
 * The arena in Chromium: two pages join, each steers (one with the keyboard, one by holding the
 * pointer on the arena) and sees the other move in the server's frames; each player's round
 * trip reaches both pages; a page whose connection is cut dims the arena and says its moves are
 * not sent, then joins again when the connection is back; a closed page leaves the arena.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { BrowserContext, Page } from 'playwright-core'
import type { RallyError } from '../../src/realtime/client/index.js'
import { newRallyClient, nextEvent, rejectionOf } from '../realtime/client-helpers.js'
import { assertNoHorizontalScroll, collectErrors, demoInChromium, PHONE } from './browser-support.js'

const DESKTOP = { width: 1200, height: 800 }

describe('the multiplayer arena in Chromium', { timeout: 120_000 }, () => {
  const setup = demoInChromium()

  async function open(
    nick: string,
    viewport: { width: number; height: number },
    prepare?: (context: BrowserContext) => Promise<void>,
  ): Promise<{ page: Page; context: BrowserContext; errors: string[] }> {
    const context = await setup.browser.newContext({ viewport })
    await prepare?.(context)
    const page = await context.newPage()
    const errors = collectErrors(page)
    await page.goto(`http://127.0.0.1:${setup.demo.port}/game.html?nick=${nick}`)
    await page.waitForSelector('body[data-connection="connected"][data-joined]', { timeout: 10_000 })
    return { page, context, errors }
  }

  /** Where `page` last saw `nick`, from the scoreboard (filled from the server's frames). */
  async function position(page: Page, nick: string): Promise<{ x: number; y: number }> {
    const item = page.locator(`#scores li[data-nick="${nick}"]`)
    return { x: Number(await item.getAttribute('data-x')), y: Number(await item.getAttribute('data-y')) }
  }

  /** Waits until `page` sees `nick` at least `distance` units along `axis` from `from`. */
  async function seesMove(page: Page, nick: string, axis: 'x' | 'y', from: number, distance: number) {
    // A string: it runs in the page, which has a DOM; this file does not.
    await page.waitForFunction(
      `(() => {
        const item = document.querySelector('#scores li[data-nick="${nick}"]')
        return item !== null && Math.abs(Number(item.dataset.${axis}) - ${from}) >= ${distance}
      })()`,
      undefined,
      { timeout: 10_000 },
    )
  }

  it('two pages see each other move, with each player’s round trip, at a 20-30 Hz server tick', async () => {
    const ann = await open('ann', PHONE)
    const ben = await open('ben', DESKTOP)
    await ann.page.waitForSelector('#scores li[data-nick="ben"]', { timeout: 5000 })
    await ben.page.waitForSelector('#scores li[data-nick="ann"]', { timeout: 5000 })

    const tickMs = (await ben.page.evaluate('window.game.frames.at(-1).tickMs')) as number
    assert.ok(tickMs >= 1000 / 30 && tickMs <= 1000 / 20, `tick of ${tickMs} ms`)
    // Frames come one tick apart in the server's time (the page interpolates on that time line).
    const ticks = (await ben.page.evaluate('window.game.frames.map((f) => f.tick)')) as number[]
    assert.ok(
      ticks.every((tick, i) => i === 0 || tick > ticks[i - 1]!),
      'frames in tick order',
    )

    // Ann steers with the keyboard, away from the nearer wall; Ben sees her go.
    const annStart = await position(ben.page, 'ann')
    const key = annStart.x < 400 ? 'ArrowRight' : 'ArrowLeft'
    await ann.page.keyboard.down(key)
    await seesMove(ben.page, 'ann', 'x', annStart.x, 80)
    await ann.page.keyboard.up(key)

    // Ben holds the pointer on the arena, far above or below himself; Ann sees him go.
    const benStart = await position(ann.page, 'ben')
    const box = (await ben.page.locator('#arena').boundingBox())!
    const targetY = benStart.y < 250 ? box.y + box.height - 2 : box.y + 2
    await ben.page.mouse.move(box.x + (benStart.x / 800) * box.width, targetY)
    await ben.page.mouse.down()
    await seesMove(ann.page, 'ben', 'y', benStart.y, 80)
    await ben.page.mouse.up()

    // Round trips (sent with the inputs, at least every second) reach both pages.
    for (const page of [ann.page, ben.page])
      await page.waitForFunction(
        `(() => {
          const items = [...document.querySelectorAll('#scores li')]
          return items.length === 2 && items.every((item) => /^\\d+$/.test(item.dataset.rtt ?? ''))
        })()`,
        undefined,
        { timeout: 10_000 },
      )
    assert.match((await ann.page.locator('#rtt').textContent()) ?? '', /^\d+ ms$/)

    await assertNoHorizontalScroll(ann.page)
    await ben.context.close()
    await ann.page.waitForFunction('document.querySelectorAll("#scores li").length === 1', undefined, {
      timeout: 10_000,
    })
    assert.deepEqual([...ann.errors, ...ben.errors], [])
    await ann.context.close()
  })

  it('refuses an input before joining (108) and one that is not a direction (107, naming the field)', async () => {
    const client = newRallyClient(`ws://127.0.0.1:${setup.demo.port}/rt`, { token: 'node-player' })
    client.connect()
    await nextEvent(client, 'connected')
    const early = (await rejectionOf(client.rpc('game.input', { dx: 1, dy: 0 }))) as RallyError
    assert.equal(early.code, 108)
    assert.match(early.message, /join the game first/)
    const joined = (await client.rpc('game.join', {})) as { id: string; tickMs: number; channel: string }
    assert.match(joined.id, /^p\d+$/)
    // Each node runs its own arena, on its own channel.
    assert.equal(joined.channel, `game:${setup.demo.live.realtime.bus.nodeId}`)
    for (const [input, field] of [
      [{ dx: 2, dy: 0 }, 'dx'],
      [{ dx: 0, dy: 'up' }, 'dy'],
      [{ dx: 0, dy: 0, rtt: -5 }, 'rtt'],
    ] as const) {
      const refused = (await rejectionOf(client.rpc('game.input', input))) as RallyError
      assert.equal(refused.code, 107, JSON.stringify(input))
      assert.equal(refused.field, field)
    }
    const notObject = (await rejectionOf(client.rpc('game.input', [1, 0]))) as RallyError
    assert.equal(notObject.code, 107)
    assert.match(notObject.message, /\{ dx, dy, rtt\? \}/)
    const accepted = (await client.rpc('game.input', { dx: -1, dy: 0.5, rtt: 12 })) as { tick: number }
    assert.equal(typeof accepted.tick, 'number')
    client.close()
  })

  it('a page whose connection is cut dims the arena, says its moves are not sent, and joins again', async () => {
    let gateOpen = true
    const cal = await open('cal', PHONE, (context) =>
      context.routeWebSocket(/\/rt$/, (route) => {
        if (gateOpen) route.connectToServer()
        else route.close({ code: 1013, reason: 'held by the test' })
      }),
    )
    const firstId = (await cal.page.evaluate('window.game.me')) as string
    await cal.page.waitForSelector('#arena:not(.stale)')
    gateOpen = false
    const client = (await cal.page.evaluate('window.game.client.clientId')) as string
    assert.ok(setup.demo.live.realtime.disconnect(client, 4008, 'cut by the test'))
    await cal.page.waitForSelector('body:not([data-connection="connected"]) #arena.stale', {
      timeout: 10_000,
    })
    assert.equal(await cal.page.locator('#offline').isVisible(), true)
    assert.equal(await cal.page.locator('#scores').getAttribute('class'), 'scores stale')

    gateOpen = true
    await cal.page.evaluate("window.dispatchEvent(new Event('online'))")
    await cal.page.waitForFunction(
      `document.body.dataset.connection === 'connected' && document.body.dataset.joined !== '${firstId}'`,
      undefined,
      { timeout: 15_000 },
    )
    await cal.page.waitForSelector('#arena:not(.stale)')
    assert.equal(await cal.page.locator('#offline').isVisible(), false)
    assert.deepEqual(cal.errors, [])
    await cal.context.close()
  })
})
