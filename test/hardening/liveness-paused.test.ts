/**
 * The heartbeat does not judge a peer whose reading we paused on purpose (issue 10, bug 4): its
 * pongs wait unread in the kernel, and the silence is ours. Liveness resumes with reading: a peer
 * that stops answering after reading resumes is terminated as before.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, test } from 'node:test'
import { ClientConnection, type ClientListener } from '../../src/client/client-connection.js'
import { type ServerWebSocket, TimeoutError } from '../../src/index.js'
import { PauseReason } from '../../src/node/socket-driver.js'
import type { PreparedFrame } from '../../src/protocol/connection.js'
import { LivenessMonitor, type Monitored } from '../../src/server/liveness.js'
import { clientFrame, disposeAll, Op, Queue, RawClient, startServer } from '../deflate/helpers.js'

afterEach(disposeAll)

const HEARTBEAT = { interval: 100, timeout: 100 }
/** Pings answered while paused before the test lets reading resume: several heartbeat rounds. */
const ROUNDS = 5

/**
 * A raw client that answers `answered` pings with pongs, then goes silent; resolves `pinged`
 * with the count each time a ping arrives.
 */
function answerPings(client: RawClient, answered: number): Queue<number> {
  const pinged = new Queue<number>()
  let count = 0
  const loop = async (): Promise<void> => {
    for (;;) {
      const frame = await client.nextFrame(10_000)
      if (frame.opcode !== Op.Ping) continue
      count++
      if (count <= answered) client.send(clientFrame(Op.Pong, frame.payload))
      pinged.push(count)
    }
  }
  loop().catch((error: Error) => pinged.fail(error))
  return pinged
}

interface Scenario {
  /** Pauses reading in the `open` handler (the application's pauseReading). */
  pauseInOpen: boolean
  /** Resumes reading the scenario's way. */
  resume(ws: ServerWebSocket<undefined>): void
}

async function pausedScenario(scenario: Scenario): Promise<void> {
  const sockets = new Queue<ServerWebSocket<undefined>>()
  const handlerStarted = new Queue<void>()
  const closes = new Queue<number>()
  const errors: unknown[] = []
  let settleHandler = (): void => {}
  const { port } = await startServer<undefined>({
    heartbeat: HEARTBEAT,
    maxPendingHandlers: 1,
    open(ws) {
      if (scenario.pauseInOpen) ws.pauseReading()
      sockets.push(ws)
    },
    message() {
      // Pending until the test settles it: with maxPendingHandlers 1, reading pauses meanwhile.
      handlerStarted.push()
      return new Promise<void>((resolve) => (settleHandler = resolve))
    },
    close(_ws, code) {
      closes.push(code)
    },
    error(error) {
      errors.push(error)
    },
  })
  const client = await RawClient.connect(port, null)
  const ws = await sockets.next(5000, 'the server socket')
  if (!scenario.pauseInOpen) {
    client.send(clientFrame(Op.Text, 'hold on'))
    await handlerStarted.next(5000, 'the message handler')
  }
  assert.ok(ws.isPaused, 'reading is paused')
  // Answers the pings of ROUNDS rounds and one more, then stops answering.
  const pinged = answerPings(client, ROUNDS + 1)
  for (let i = 1; i <= ROUNDS; i++) assert.equal(await pinged.next(5000, `ping ${i}`), i)
  // Several rounds passed while the pongs waited unread: the peer is still here.
  assert.equal(closes.all.length, 0, 'not terminated while reading was paused')
  // Liveness resumes with reading: the pending pongs are read, then silence is judged.
  scenario.resume(ws)
  if (!scenario.pauseInOpen) settleHandler()
  assert.equal(await closes.next(5000, 'termination once reading resumed and pings go unanswered'), 1006)
  assert.ok(
    errors.some((error) => error instanceof TimeoutError),
    'reported as a heartbeat timeout',
  )
}

describe('heartbeat while reading is paused on purpose', () => {
  test('pauseReading() in open: a client answering every ping is not terminated', async () => {
    await pausedScenario({ pauseInOpen: true, resume: (ws) => ws.resumeReading() })
  })

  test('an async message handler pending (maxPendingHandlers reached): not terminated', async () => {
    await pausedScenario({ pauseInOpen: false, resume: () => {} })
  })
})

describe('LivenessMonitor: held sockets', () => {
  class Fake implements Monitored {
    receiveCount = 0
    readingHeld = false
    heartbeatMark = -1
    heartbeatRound = 0
    idleMark = -1
    idleStrikes = 0
    pings = 0
    timedOut = new Queue<string>()
    sendPreparedFrame(_frame: PreparedFrame): void {
      this.pings++
    }
    heartbeatTimedOut(): void {
      this.timedOut.push('heartbeat')
    }
    idleTimedOut(): void {
      this.timedOut.push('idle')
    }
  }

  test('a held socket is pinged but not judged; a silent free one is', async () => {
    const held = new Fake()
    held.readingHeld = true
    const free = new Fake()
    const monitor = new LivenessMonitor(() => [held, free], { interval: 20, timeout: 20 }, 0)
    monitor.start()
    try {
      assert.equal(await free.timedOut.next(5000, 'the free socket timing out'), 'heartbeat')
      assert.ok(held.pings >= 1, 'the held socket was pinged')
      assert.equal(held.timedOut.all.length, 0)
    } finally {
      monitor.stop()
    }
  })

  test('idle checks hold off while reading is held', async () => {
    const held = new Fake()
    held.readingHeld = true
    const free = new Fake()
    const monitor = new LivenessMonitor(() => [held, free], false, 20)
    monitor.start()
    try {
      assert.equal(await free.timedOut.next(5000, 'the free socket going idle'), 'idle')
      assert.equal(held.timedOut.all.length, 0)
    } finally {
      monitor.stop()
    }
  })
})

describe('client heartbeat while reading is paused on purpose', () => {
  test('a client that paused reading does not terminate a server that answers its pings', async () => {
    const pingsSeen = new Queue<number>()
    const messages = new Queue<string>()
    const { url } = await startServer<undefined>({
      ping() {
        pingsSeen.push(pingsSeen.all.length + 1)
      },
      message(ws, data) {
        ws.send(data)
      },
      error() {},
    })
    const closed = new Queue<number>()
    const opened = new Queue<void>()
    let client: ClientConnection | undefined
    const listener: ClientListener = {
      onOpen() {
        // Paused before the first read: the server's pongs wait unread in the kernel.
        client!.driver!.pause(PauseReason.User)
        opened.push()
      },
      onConnectFailure(message) {
        opened.fail(new Error(message))
      },
      onExtensionFailure() {},
      onMessage(data) {
        messages.push(Buffer.from(data).toString())
      },
      onPing() {},
      onPong() {},
      onCloseFrame() {},
      onProtocolError() {},
      onDrain() {},
      onClosed(info) {
        client!.stopTimers()
        closed.push(info.code)
        messages.fail(new Error(`closed with ${info.code}`))
      },
    }
    client = new ClientConnection(new URL(url), [], { heartbeat: { interval: 50, timeout: 50 } }, listener)
    try {
      await opened.next(5000, 'the client open')
      // Several heartbeat rounds: each ping reached the server, each pong waits unread.
      for (let i = 1; i <= ROUNDS; i++) assert.equal(await pingsSeen.next(5000, `client ping ${i}`), i)
      assert.equal(closed.all.length, 0, 'not terminated while reading was paused')
      client.driver!.resume(PauseReason.User)
      client.driver!.connection.sendText('still here')
      assert.equal(await messages.next(5000, 'the echo after resuming'), 'still here')
    } finally {
      client.driver?.terminate()
    }
  })
})
