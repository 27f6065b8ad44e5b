// The SDK's *web* build (dist/index.cjs.js, what a browser app bundles) in GATEWAY mode. It talks
// through global fetch like a browser; the only browser globals it needs are shimmed here:
// `window` (= globalThis), an in-memory `localStorage`/`sessionStorage`, and a `WebSocket` that
// refuses to be constructed (realtime is not tested). The SDK's code is not touched. Unlike the
// Node build, the web build rejects non-2xx GATEWAY replies with their body, so here errors
// arrive as rejections and an expired access token makes the SDK refresh and retry.
// (Its CLOUD_API mode uses XMLHttpRequest, which Node does not have; the CLOUD_API protocol is
// covered with the Node build in database-cloudapi.test.js.)
'use strict'

const store = new Map()
globalThis.window = globalThis
globalThis.localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => { store.set(k, String(v)) },
  removeItem: (k) => { store.delete(k) },
  clear: () => store.clear(),
}
globalThis.sessionStorage = globalThis.localStorage
globalThis.WebSocket = class { constructor() { throw new Error('no WebSocket in this test') } }

const path = require('node:path')
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { startServer, http, admin, jwtClaims, signUp, sleep, ENV } = require('../lib/harness')

const DB = '/v1/database/instances/(default)/databases/(default)'

// the package's "exports" only offer the Node build (dist/index.node.cjs.js) to Node; load the
// web build, its neighbour, by its path
const cloudbase = require(path.join(path.dirname(require.resolve('@cloudbase/js-sdk')), 'index.cjs.js'))

// 2 s access tokens: the SDK considers them expired at once (it subtracts 30 s) and refreshes
// before every call, except when a test makes it believe otherwise
let server, adm, auth, db
before(async () => {
  server = await startServer(['--access-token-ttl', '2'])
  adm = admin(server)
  await adm.createCollection('todos')
  await adm.createCollection('locked')
  await adm.setRules('locked', { preset: 'ADMINONLY' })
  const app = cloudbase.init({ env: ENV })
  app.registerHost(server.host, 'http')
  auth = app.auth()
  db = app.database()
})
after(async () => { if (server) await server.stop() })

/** The rejection of `promise` (fails if it resolves). */
async function rejection(promise) {
  try {
    const value = await promise
    assert.fail(`expected a rejection, got ${JSON.stringify(value)}`)
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e
    return e
  }
}

test('web build: anonymous sign-in, database writes and reads, credentials in localStorage', async () => {
  const { data, error } = await auth.signInAnonymously()
  assert.equal(error, null)
  const uid = data.user.id
  assert.equal((await auth.getUser()).data.user.id, uid)
  const stored = JSON.parse(store.get(`credentials_${ENV}`))
  assert.equal(jwtClaims(stored.access_token).sub, uid)

  const added = await db.collection('todos').add({ title: 'from the web build', when: new Date(1700000000000) })
  assert.match(added.id, /^[0-9a-f]{32}$/)
  const got = await db.collection('todos').where({ title: 'from the web build' }).get()
  assert.equal(got.data.length, 1)
  assert.equal(got.data[0]._openid, uid)
  assert.equal(got.data[0].when.getTime(), 1700000000000)
  const set = await db.collection('todos').doc('web-set').set({ title: 'set' })
  assert.equal(set.upsertedId, 'web-set')
  assert.equal((await db.collection('todos').count()).total, 2)
})

test('web build: GATEWAY errors reject with {code, message, requestId}', async () => {
  const denied = await rejection(db.collection('locked').add({ a: 1 }))
  assert.equal(denied.code, 'DATABASE_PERMISSION_DENIED')
  assert.match(denied.message, /create/)
  assert.ok(denied.requestId) // the X-Request-Id the SDK sent, echoed by the server
  const deniedRead = await rejection(db.collection('locked').get())
  assert.equal(deniedRead.code, 'DATABASE_PERMISSION_DENIED')
  const missing = await rejection(db.collection('nope').count())
  assert.equal(missing.code, 'DATABASE_COLLECTION_NOT_EXIST')
  assert.match(missing.message, /collection `nope` does not exist/)
  const missingUpdate = await rejection(db.collection('nope').where({ a: 1 }).update({ a: 2 }))
  assert.equal(missingUpdate.code, 'DATABASE_COLLECTION_NOT_EXIST')
  assert.deepEqual(await adm.allDocs('locked'), [])
})

test('web build: a token the server finds expired (client clock behind) is refreshed and the call retried', async () => {
  await signUp(server, { username: 'webby', password: 'webby password' })
  const signIn = await auth.signInWithPassword({ username: 'webby', password: 'webby password' })
  assert.equal(signIn.error, null)
  // make the SDK believe its access token is good for another hour, as a slow clock would
  const key = `credentials_${ENV}`
  const creds = JSON.parse(store.get(key))
  store.set(key, JSON.stringify({ ...creds, expires_at: new Date(Date.now() + 3600e3).toISOString() }))
  // wait until the server refuses the token as expired, with the code the SDK reacts to
  for (;;) {
    const r = await http(server.base, 'GET', `${DB}/collections/todos/documents`, { token: creds.access_token })
    if (r.status === 401) {
      assert.equal(r.body.code, 'ACCESS_TOKEN_EXPIRED')
      break
    }
    assert.equal(r.status, 200)
    await sleep(100)
  }
  const res = await db.collection('todos').add({ title: 'after expiry' })
  assert.match(res.id, /^[0-9a-f]{32}$/) // the server said ACCESS_TOKEN_EXPIRED, the SDK refreshed and retried
  const now = JSON.parse(store.get(key))
  assert.notEqual(now.access_token, creds.access_token)
  assert.equal(jwtClaims(now.access_token).sub, signIn.data.user.id)
  const [doc] = (await adm.allDocs('todos')).filter((d) => d.title === 'after expiry')
  assert.equal(doc._openid, signIn.data.user.id)
})

test('web build: signOut clears the stored credentials and the database refuses the client', async () => {
  assert.equal((await auth.signOut()).error, null)
  assert.equal(store.has(`credentials_${ENV}`), false)
  const refused = await rejection(db.collection('todos').get())
  assert.equal(refused.code, 'DATABASE_PERMISSION_DENIED')
  assert.match(refused.message, /sign in/)
})
