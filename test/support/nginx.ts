/**
 * A real nginx for the tests: Debian's nginx started as a child process (not a daemon) on a free
 * port of 127.0.0.1, with its configuration, pid file, logs and temporary directories in a
 * temporary directory of its own, reloaded with a new configuration while it runs, and stopped by
 * the test. scripts/ensure-system-deps.mjs installs it; the system service stays stopped.
 *
 *   const nginx = await startNginx(({ port }) => `server { listen 127.0.0.1:${port}; ... }`)
 *   fetch(`http://127.0.0.1:${nginx.port}/...`)
 *   await nginx.reload(({ port }) => `...another config...`)
 *   await nginx.stop()
 *
 * The function given returns what goes inside nginx's `http { }` block (maps, upstreams, servers);
 * the main context (events, temp paths, logs) is this file's. It is called again on each reload,
 * with the same port and directory.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './brokers.js'

export const NGINX = '/usr/sbin/nginx'

/** What a configuration is written for. */
export interface NginxContext {
  /** The port the test's server block listens on (`listen 127.0.0.1:${port};`). */
  readonly port: number
  /** nginx's own temporary directory (its prefix): for files a configuration needs. */
  readonly dir: string
}

/** Returns the inside of nginx's `http { }` block. */
export type NginxConfig = (context: NginxContext) => string

export interface Nginx {
  /** The port the configuration's server listens on. */
  readonly port: number
  readonly dir: string
  /**
   * Writes the new configuration, checks it (`nginx -t`: a bad one is an error here, not a
   * silent reload failure) and reloads (SIGHUP). Resolves once new connections are served by
   * the new configuration; connections already open are finished by the old workers, as in
   * production.
   */
  reload(config: NginxConfig): Promise<void>
  /** Stops nginx (fast shutdown: open connections are closed) and removes its directory. */
  stop(): Promise<void>
  /** nginx's error log so far (for failure messages). */
  errorLog(): string
}

/**
 * nginx masters still running. A test process that ends without stopping them stops them on its
 * way out. SIGTERM, not SIGKILL: the master stops its workers, which a killed master would leave
 * behind.
 */
const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGTERM')
})

/** How long nginx may take to serve the configuration it was given before that counts as failed. */
const READY_TIMEOUT_MS = 15_000

/**
 * The main context around the test's configuration. `master_process on` (the default) is what
 * makes SIGHUP reload; one worker is enough. Every path nginx writes is inside `dir`: the package's
 * defaults (/var/lib/nginx, /var/log/nginx) are the system service's. Workers run as `nobody`
 * when the tests run as root, so the temp directories are made writable for them.
 * The control server answers the configuration's generation on its own port: it tells when a
 * reload has taken effect, without touching the test's server blocks.
 */
function mainConfig(dir: string, controlPort: number, generation: number, http: string): string {
  const temp = (name: string) => join(dir, 'temp', name)
  return `daemon off;
master_process on;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path ${temp('client_body')};
    proxy_temp_path ${temp('proxy')};
    fastcgi_temp_path ${temp('fastcgi')};
    uwsgi_temp_path ${temp('uwsgi')};
    scgi_temp_path ${temp('scgi')};

    server {
        listen 127.0.0.1:${controlPort};
        location = /generation { return 200 "${generation}"; }
    }

${http}
}
`
}

/** GET /generation on the control port: the configuration generation served, or undefined. */
function servedGeneration(controlPort: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port: controlPort, path: '/generation', agent: false, timeout: 1000 },
      (response) => {
        let body = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => {
          body += chunk
        })
        response.on('end', () => resolve(response.statusCode === 200 ? Number(body) : undefined))
        response.on('error', () => resolve(undefined))
      },
    )
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(undefined))
    req.end()
  })
}

/** Workers that began their graceful shutdown, by the error log (level notice, as configured here). */
function gracefulShutdowns(log: string): number {
  return log.split('gracefully shutting down').length - 1
}

/** Attempts at starting on fresh ports when one was taken between freePort() and nginx's bind. */
const START_ATTEMPTS = 3

export async function startNginx(config: NginxConfig): Promise<Nginx> {
  if (!existsSync(NGINX))
    throw new Error(`${NGINX} is missing: run node scripts/run-tests.mjs test/browser (it installs nginx)`)
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnFreePorts(config)
    } catch (error) {
      // freePort() releases the port before nginx binds it: another process (or the other
      // freePort call) may take it in between. Fresh ports then; any other failure is final.
      if (attempt >= START_ATTEMPTS || !/Address already in use/.test(String(error))) throw error
    }
  }
}

async function startOnFreePorts(config: NginxConfig): Promise<Nginx> {
  const port = await freePort()
  let controlPort = await freePort()
  while (controlPort === port) controlPort = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'rally-nginx-'))
  chmodSync(dir, 0o755)
  for (const name of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    const path = join(dir, 'temp', name)
    mkdirSync(path, { recursive: true })
    chmodSync(path, 0o777)
  }
  const file = join(dir, 'nginx.conf')
  const errorLogFile = join(dir, 'error.log')
  const errorLog = () => (existsSync(errorLogFile) ? readFileSync(errorLogFile, 'utf8') : '')
  let generation = 0
  let output = ''

  const write = (next: NginxConfig) => {
    generation++
    writeFileSync(file, mainConfig(dir, controlPort, generation, next({ port, dir })))
    // -e: nginx opens its default error log before it reads the configuration; point it here.
    const test = spawnSync(NGINX, ['-t', '-q', '-p', dir, '-e', errorLogFile, '-c', file], {
      encoding: 'utf8',
    })
    if (test.status !== 0)
      throw new Error(`nginx rejects the configuration:\n${test.stderr}\n${readFileSync(file, 'utf8')}`)
  }

  // Waits until the control server answers the current generation. nginx has no readiness signal
  // to wait on: polling the port (a short pause between attempts) is the event here.
  const served = async (what: string) => {
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(
          `nginx exited (${child.exitCode ?? child.signalCode}) ${what}:\n${output}\n${errorLog()}`,
        )
      if ((await servedGeneration(controlPort)) === generation) return
      if (Date.now() > deadline)
        throw new Error(`nginx not serving ${what} after ${READY_TIMEOUT_MS} ms:\n${errorLog()}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  try {
    write(config)
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  const child = spawn(NGINX, ['-p', dir, '-e', errorLogFile, '-c', file], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = once(child, 'exit')
  const keep = (chunk: Buffer) => {
    if (output.length < 16_384) output += chunk.toString()
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  running.add(child)
  child.once('exit', () => running.delete(child))
  try {
    await served('its first configuration')
  } catch (error) {
    child.kill('SIGTERM')
    await exited
    rmSync(dir, { recursive: true, force: true })
    throw error
  }

  return {
    port,
    dir,
    errorLog,
    async reload(next) {
      write(next)
      const shutdownsBefore = gracefulShutdowns(errorLog())
      child.kill('SIGHUP')
      await served(`generation ${generation} after a reload`)
      // The new worker answering is not enough: until the old one handles the master's QUIT it
      // still accepts on the shared listening sockets, and a new connection may reach it (seen in
      // CI: a request after the reload served by the old configuration). It logs "gracefully
      // shutting down" and closes its listening sockets in the same step of its cycle, before it
      // next accepts: once that line is there, new connections go to the new worker only.
      const deadline = Date.now() + READY_TIMEOUT_MS
      while (gracefulShutdowns(errorLog()) <= shutdownsBefore) {
        if (Date.now() > deadline)
          throw new Error(`nginx's old worker did not shut down after a reload:\n${errorLog()}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
