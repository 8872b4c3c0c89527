// Installs, with apt-get, the system packages the test suite talks to when they are missing:
// Debian's python3-websockets and Chromium (WebSocket peers nobody here wrote). Runs as root on
// Debian; elsewhere it says what is missing and the interop tests report the missing peer.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

export const CHROMIUM = '/usr/bin/chromium'

const DEBIAN_PYTHON = '/usr/bin/python3'

function hasPythonWebsockets() {
  const probe = spawnSync(DEBIAN_PYTHON, ['-c', 'import websockets'], { stdio: 'ignore' })
  return probe.status === 0
}

function aptInstall(packages) {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  console.log(`# installing ${packages.join(' ')} with apt-get (needed by the interop tests)`)
  let result = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
    stdio: 'inherit',
    env,
  })
  if (result.status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit', env })
    result = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      stdio: 'inherit',
      env,
    })
  }
  return result.status === 0
}

export function ensureSystemDeps() {
  const missing = []
  if (!hasPythonWebsockets()) missing.push('python3-websockets')
  if (!existsSync(CHROMIUM)) missing.push('chromium')
  if (missing.length === 0) return
  if (!aptInstall(missing)) console.error(`# could not install ${missing.join(' ')}; interop tests will fail`)
}
