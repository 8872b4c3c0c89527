// Installs, with apt-get, the system packages the test suite talks to when they are missing:
// Debian's python3-websockets, python3-h2 with python3-wsproto (an RFC 8441 client for
// test/http2) and Chromium (WebSocket peers nobody here wrote), and redis-server
// and nats-server (the brokers the cluster-bus tests start on free ports of their own; the
// system services are left stopped). Runs as root on Debian; elsewhere it says what is missing
// and the tests report the missing peer or broker.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

export const CHROMIUM = '/usr/bin/chromium'

const DEBIAN_PYTHON = '/usr/bin/python3'
export const REDIS_SERVER = '/usr/bin/redis-server'
export const NATS_SERVER = '/usr/sbin/nats-server'
export const NGINX = '/usr/sbin/nginx'

function hasPythonModule(name) {
  const probe = spawnSync(DEBIAN_PYTHON, ['-c', `import ${name}`], { stdio: 'ignore' })
  return probe.status === 0
}

function aptInstall(packages, why = 'the interop tests') {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  console.log(`# installing ${packages.join(' ')} with apt-get (needed by ${why})`)
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
  if (!hasPythonModule('websockets')) missing.push('python3-websockets')
  if (!hasPythonModule('h2')) missing.push('python3-h2')
  if (!hasPythonModule('wsproto')) missing.push('python3-wsproto')
  if (!existsSync(CHROMIUM)) missing.push('chromium')
  if (missing.length === 0) return
  if (!aptInstall(missing)) console.error(`# could not install ${missing.join(' ')}; interop tests will fail`)
}

// The brokers for test/bus. Debian starts a package's service on installation where it can
// (containers usually refuse it through policy-rc.d); the tests want no system broker running,
// so the services are stopped and disabled again right after installing.
export function ensureBrokers() {
  const missing = []
  if (!existsSync(REDIS_SERVER)) missing.push('redis-server')
  if (!existsSync(NATS_SERVER)) missing.push('nats-server')
  if (missing.length === 0) return
  if (!aptInstall(missing, 'the cluster-bus tests')) {
    console.error(`# could not install ${missing.join(' ')}; bus tests will fail`)
    return
  }
  for (const service of missing) {
    spawnSync('service', [service, 'stop'], { stdio: 'ignore' })
    spawnSync('systemctl', ['disable', service], { stdio: 'ignore' })
  }
}

// Debian's nginx, the real proxy in front of Rally for the transport fallback (browser) and
// cluster tests; they start their own on free ports (test/support/nginx.ts), so the system
// service, which the package starts where it can, is stopped and disabled again.
export function ensureNginx() {
  if (existsSync(NGINX)) return
  if (!aptInstall(['nginx'], 'the proxy tests')) {
    console.error('# could not install nginx; the proxy tests will fail')
    return
  }
  spawnSync('service', ['nginx', 'stop'], { stdio: 'ignore' })
  spawnSync('systemctl', ['disable', 'nginx'], { stdio: 'ignore' })
}
