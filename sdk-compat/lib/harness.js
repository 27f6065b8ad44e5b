// Test harness: starts the real `lightbase` binary on 127.0.0.1 (port 0, read back from the data
// dir's server.json) with a temporary data dir and a server API key, talks to its admin API with
// plain fetch, mints custom-sign-in tickets, and builds unmodified @cloudbase/js-sdk apps pointed
// at it with app.registerHost(). The server is stopped after the test file (also on failure) and
// SIGKILLed if the test process exits first.
'use strict'

const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const REPO = path.resolve(__dirname, '..', '..')
const BIN = process.env.LIGHTBASE_BIN || path.join(REPO, 'target', 'debug', 'lightbase')
const ADMIN_KEY = 'sdk-compat-admin-key-0123456789abcdef'
const ENV = 'default'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts a server; `args` are extra `lightbase serve` flags. Resolves to a handle with `stop()`. */
async function startServer(args = []) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`lightbase binary not found at ${BIN}: build it (cargo build) or set LIGHTBASE_BIN`)
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lb-sdk-compat-'))
  const child = spawn(
    BIN,
    // sign-in is rate limited to 10/min per address by default; the tests sign in more often
    ['serve', '--http', '127.0.0.1:0', '--dir', dir, '--rate-limit-signin', '1000/s:1000', ...args],
    {
      env: { ...process.env, LIGHTBASE_ADMIN_KEY: ADMIN_KEY, LIGHTBASE_LOG: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  let exited = null
  child.on('exit', (code, signal) => { exited = { code, signal } })
  const killOnExit = () => { if (!exited) child.kill('SIGKILL') }
  process.on('exit', killOnExit)

  // wait for server.json (written once the port is bound), then for /health
  const deadline = Date.now() + 20000
  let base = null
  while (!base) {
    if (exited) throw new Error(`lightbase exited early (${JSON.stringify(exited)}): ${stderr}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`lightbase did not start: ${stderr}`) }
    try {
      const info = JSON.parse(fs.readFileSync(path.join(dir, 'server.json'), 'utf8'))
      base = `http://${info.http}`
    } catch { await sleep(25) }
  }
  for (;;) {
    try { if ((await fetch(`${base}/health`)).ok) break } catch { /* not yet */ }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`lightbase not healthy: ${stderr}`) }
    await sleep(25)
  }
  const host = base.slice('http://'.length)

  return {
    base,
    host,
    dir,
    stderr: () => stderr,
    /** SIGTERM (graceful), SIGKILL after 10 s; removes the data dir. */
    async stop() {
      if (!exited) {
        const done = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000)
        await done
        clearTimeout(timer)
      }
      process.removeListener('exit', killOnExit)
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A plain HTTP call; resolves to {status, body (parsed JSON or text), headers}. */
async function http(base, method, p, { body, token, headers = {} } = {}) {
  const h = { ...headers }
  if (token) h.authorization = `Bearer ${token}`
  const res = await fetch(base + p, {
    method,
    headers: h,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let parsed = text
  try { parsed = JSON.parse(text) } catch { /* text */ }
  return { status: res.status, body: parsed, headers: res.headers }
}

/** The admin API with the server API key. Throws on a non-2xx reply. */
function admin(server) {
  const call = async (method, p, body) => {
    const r = await http(server.base, method, p, { body, token: ADMIN_KEY })
    if (r.status >= 300) throw new Error(`${method} ${p} -> ${r.status} ${JSON.stringify(r.body)}`)
    return r.body
  }
  const DB = '/v1/database/instances/(default)/databases/(default)'
  return {
    call,
    createCollection: (name) => call('POST', `${DB}/collections`, { collectionName: name }),
    setRules: (coll, rules) => call('PUT', `/admin/v1/envs/${ENV}/collections/${coll}/rules`, rules),
    /** Every document of a collection, read as admin (bypasses rules). */
    allDocs: async (coll) => (await call('GET', `${DB}/collections/${coll}/documents?limit=1000`)).list,
    findUsers: async (search) => (await call('GET', `/admin/v1/envs/${ENV}/users?search=${encodeURIComponent(search)}`)).users,
    ticketKey: async () => (await call('GET', `/admin/v1/envs/${ENV}/ticket-key`)).key,
  }
}

const b64url = (b) => Buffer.from(b).toString('base64url')

/** A custom-sign-in ticket: HS256 JWT {uid, env, iat, exp}, exactly as docs/auth.md shows. */
function mintTicket(key, env, uid, ttl = 600) {
  const iat = Math.floor(Date.now() / 1000)
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const body = b64url(JSON.stringify({ uid, env, iat, exp: iat + ttl }))
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64url')).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${sig}`
}

/** The claims of a JWT (no verification: only to look at what the server put in). */
function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'))
}

/**
 * An unmodified @cloudbase/js-sdk app pointed at `server`. The package's "node" export is its
 * Node build, which brings its own adapter (global fetch, in-memory storage): no shims needed.
 * Credentials live in that module-global storage, keyed by env, so one process is one signed-in
 * client; tests switch users by signing in again.
 */
function sdkApp(server, endPointMode = 'GATEWAY') {
  const cloudbase = require('@cloudbase/js-sdk')
  const app = cloudbase.init({ env: ENV, endPointMode })
  app.registerHost(server.host, 'http')
  return { cloudbase, app, auth: app.auth(), db: app.database() }
}

/** Registers a user the way a sign-up page without e-mail codes does: POST /auth/v1/signup. */
async function signUp(server, body) {
  const r = await http(server.base, 'POST', `/auth/v1/signup?client_id=${ENV}`, { body })
  if (r.status !== 200) throw new Error(`signup -> ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

module.exports = { ADMIN_KEY, ENV, startServer, http, admin, mintTicket, jwtClaims, sdkApp, signUp, sleep }
