/**
 * Errors of the listening socket on Rally's own port (issue 10, bug 7). Out of file descriptors,
 * accept fails with EMFILE and Node's net server emits 'error' (an ErrnoException with syscall
 * 'accept'). Without a listener that error is thrown out of `emit` and ends the process. Now it
 * reaches the `error` handler with kind 'accept', and the server keeps accepting.
 *
 * On Linux libuv absorbs most EMFILEs itself (it keeps a reserve descriptor, closes it to accept
 * and drop the pending connections, then reopens it), so the error reaches Node only when that
 * reserve could not be reopened — not something a test can provoke reliably with `ulimit -n`
 * (tried: the child server survived 120 connections under a limit of 64 without an 'error'). The
 * test emits the error exactly as node:net does and checks what follows over a real socket.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { ServerErrorKind } from '../../src/index.js'
import { disposeAll, EventQueue, openClient, startServer } from './helpers.js'

after(disposeAll)

/** The error node:net's onconnection emits when accept fails. */
function acceptError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`accept ${code}`), { code, errno: -24, syscall: 'accept' })
}

describe('the listening socket fails to accept (EMFILE)', () => {
  it('reports the error with kind accept, does not throw, and keeps accepting', async () => {
    const errors = new EventQueue<{ error: unknown; kind: ServerErrorKind }>()
    const { server, url } = await startServer({
      error: (error, _ws, kind) => errors.push({ error, kind }),
    })
    const error = acceptError('EMFILE')
    assert.doesNotThrow(() => server.listener!.emit('error', error))
    const reported = await errors.next(1000, 'the error handler')
    assert.equal(reported.error, error)
    assert.equal(reported.kind, 'accept')
    const ws = await openClient(url)
    assert.equal(ws.readyState, 1)
  })

  it('without an error handler, prints the error instead of crashing', async (t) => {
    const printed: unknown[] = []
    t.mock.method(console, 'error', (value: unknown) => void printed.push(value))
    const { server, url } = await startServer()
    const error = acceptError('EMFILE')
    assert.doesNotThrow(() => server.listener!.emit('error', error))
    assert.deepEqual(printed, [error])
    const ws = await openClient(url)
    assert.equal(ws.readyState, 1)
  })
})
