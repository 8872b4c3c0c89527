/**
 * A self-signed certificate for localhost and 127.0.0.1, made with openssl in a temporary folder:
 * what the TLS and HTTP/2 suites serve wss:// and h2 with.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Certificate {
  key: Buffer
  cert: Buffer
  keyFile: string
  certFile: string
  dispose(): void
}

export function makeCertificate(): Certificate {
  const dir = mkdtempSync(join(tmpdir(), 'rally-cert-'))
  const result = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { timeout: 30_000, encoding: 'utf8' },
  )
  if (result.error !== undefined)
    throw new Error(`openssl is required to generate the test certificate: ${result.error.message}`)
  assert.equal(result.status, 0, `openssl failed: ${result.stderr}`)
  return {
    key: readFileSync(join(dir, 'key.pem')),
    cert: readFileSync(join(dir, 'cert.pem')),
    keyFile: join(dir, 'key.pem'),
    certFile: join(dir, 'cert.pem'),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  }
}
