// Installs, with apt-get, the system packages the test suite talks to when they are missing:
// Debian's python3-websockets (a WebSocket peer nobody here wrote). Runs as root on Debian; on
// another machine it says what to install and the interop tests report the missing peer.
import { spawnSync } from 'node:child_process'

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
  if (missing.length === 0) return
  if (!aptInstall(missing)) console.error(`# could not install ${missing.join(' ')}; interop tests will fail`)
}
