// Auth through the unmodified @cloudbase/js-sdk (GATEWAY mode, the default) against a real
// lightbase: anonymous, username/email + password, custom ticket, token refresh, sign-out.
'use strict'

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { startServer, http, admin, mintTicket, jwtClaims, sdkApp, signUp, sleep, ENV } = require('../lib/harness')

// Access tokens live 31 s: the SDK treats a token as expired 30 s before its `expires_in` runs
// out, so it refreshes (POST /auth/v1/token) once a token is more than 1 s old.
const ACCESS_TTL = 31

let server, adm, sdk
before(async () => {
  server = await startServer(['--access-token-ttl', String(ACCESS_TTL)])
  adm = admin(server)
  await adm.createCollection('notes')
  sdk = sdkApp(server)
})
after(async () => { if (server) await server.stop() })

const session = async () => {
  const { data, error } = await sdk.auth.getSession()
  assert.equal(error, null)
  return data.session
}

test('registerHost sends auth to the server: signInAnonymously, getUser, currentUser', async () => {
  const { data, error } = await sdk.auth.signInAnonymously()
  assert.equal(error, null)
  const uid = data.user.id
  assert.match(uid, /^[0-9a-f]{32}$/)
  assert.equal(data.user.is_anonymous, true)
  assert.equal(data.session.scope, 'anonymous')
  assert.equal(data.session.token_type, 'Bearer')
  const claims = jwtClaims(data.session.access_token)
  assert.equal(claims.sub, uid)
  assert.equal(claims.env, ENV)
  assert.equal(claims.exp - claims.iat, ACCESS_TTL)

  const got = await sdk.auth.getUser()
  assert.equal(got.error, null)
  assert.equal(got.data.user.id, uid)
  assert.equal(got.data.user.user_metadata.name, 'anonymous')
  assert.equal(got.data.user.app_metadata.provider, 'anonymous')
  assert.equal(got.data.user.user_metadata.hasPassword, false)
  assert.equal(sdk.auth.currentUser.uid, uid)

  // the server knows this user as anonymous
  const [user] = await adm.findUsers(uid)
  assert.equal(user.uid, uid)
  assert.equal(user.anonymous, true)
})

test('signUp in js-sdk 3.7.0 needs an e-mail/SMS code; Lightbase does not send codes', async () => {
  // username + password: the SDK refuses locally (it wants an email or phone for the OTP)
  const byName = await sdk.auth.signUp({ username: 'nobody', password: 'a long password' })
  assert.equal(byName.data.user, null)
  assert.match(byName.error.message, /email or phone/)
  // email + password: the SDK first asks POST /auth/v1/verification, which is not served
  const byEmail = await sdk.auth.signUp({ email: 'nobody@example.com', password: 'a long password' })
  assert.equal(byEmail.data.user, null)
  assert.equal(byEmail.error.code, 'not_found')
  // nothing was created
  assert.deepEqual(await adm.findUsers('nobody'), [])
})

test('signInWithPassword with a username and with an email', async () => {
  const alice = await signUp(server, { username: 'alice', email: 'alice@example.com', password: 'alice password' })

  const byName = await sdk.auth.signInWithPassword({ username: 'alice', password: 'alice password' })
  assert.equal(byName.error, null)
  assert.equal(byName.data.user.id, alice.sub)
  assert.equal(byName.data.user.user_metadata.username, 'alice')
  assert.equal(byName.data.user.email, 'alice@example.com')
  assert.equal(byName.data.user.is_anonymous, false)
  assert.equal(byName.data.user.user_metadata.hasPassword, true)
  assert.equal(byName.data.session.scope, 'user')
  assert.equal(sdk.auth.currentUser.uid, alice.sub)
  assert.equal((await sdk.auth.getUser()).data.user.id, alice.sub)

  const byEmail = await sdk.auth.signInWithPassword({ email: 'ALICE@example.com', password: 'alice password' })
  assert.equal(byEmail.error, null)
  assert.equal(byEmail.data.user.id, alice.sub)
  assert.notEqual(byEmail.data.session.access_token, byName.data.session.access_token)

  const wrong = await sdk.auth.signInWithPassword({ username: 'alice', password: 'wrong password' })
  assert.equal(wrong.data.user, null)
  assert.equal(wrong.error.code, 'invalid_grant')
  assert.equal(wrong.error.category, 'INVALID_CREDENTIALS')
})

test('signInWithCustomTicket with a ticket minted from the env ticket key', async () => {
  const key = await adm.ticketKey()
  const res = await sdk.auth.signInWithCustomTicket(() => Promise.resolve(mintTicket(key, ENV, 'user-42')))
  assert.equal(res.error, null)
  const [user] = await adm.findUsers('user-42')
  assert.equal(user.custom_id, 'user-42')
  assert.equal(user.login_type, 'CUSTOM')
  assert.equal(res.data.user.id, user.uid)
  assert.equal(res.data.user.app_metadata.provider, 'custom')
  assert.equal(jwtClaims(res.data.session.access_token).lt, 'CUSTOM')

  // the same ticket uid is the same user
  const again = await sdk.auth.signInWithCustomTicket(() => Promise.resolve(mintTicket(key, ENV, 'user-42')))
  assert.equal(again.data.user.id, user.uid)

  // a ticket signed with another key is refused, and the SDK reports it
  const forged = mintTicket(Buffer.alloc(32, 7).toString('base64url'), ENV, 'user-42')
  const bad = await sdk.auth.signInWithCustomTicket(() => Promise.resolve(forged))
  assert.equal(bad.data.user, null)
  assert.equal(bad.error.code, 'invalid_grant')
})

test('the SDK refreshes an old access token by itself and the call still works', async () => {
  await signUp(server, { username: 'refresher', password: 'refresher password' })
  const signIn = await sdk.auth.signInWithPassword({ username: 'refresher', password: 'refresher password' })
  assert.equal(signIn.error, null)
  const first = await session()
  const events = []
  const { data: { subscription } } = sdk.auth.onAuthStateChange((event) => events.push(event))

  await sleep(1200) // the SDK now considers the access token expired
  const added = await sdk.db.collection('notes').add({ text: 'after refresh' })
  assert.match(added.id, /^[0-9a-f]{32}$/)
  const second = await session()
  assert.notEqual(second.access_token, first.access_token)
  assert.notEqual(second.refresh_token, first.refresh_token)
  assert.equal(jwtClaims(second.access_token).sub, signIn.data.user.id)
  assert.equal(jwtClaims(second.access_token).sid, jwtClaims(first.access_token).sid) // same session
  assert.ok(events.includes('TOKEN_REFRESHED'), `events: ${events}`)
  subscription.unsubscribe()

  // the refresh token the SDK spent cannot be used again; replaying it ends the session
  const replay = await http(server.base, 'POST', `/auth/v1/token?client_id=${ENV}`, {
    body: { grant_type: 'refresh_token', refresh_token: first.refresh_token },
  })
  assert.equal(replay.status, 400)
  assert.equal(replay.body.error, 'invalid_grant')
})

test('refreshSession() rotates the tokens of the session', async () => {
  await sdk.auth.signInAnonymously()
  const before = await session()
  const { data, error } = await sdk.auth.refreshSession()
  assert.equal(error, null)
  assert.notEqual(data.session.refresh_token, before.refresh_token)
  assert.equal(data.user.id, jwtClaims(before.access_token).sub)
  // the new access token works on the server
  const me = await http(server.base, 'GET', '/auth/v1/user/me', { token: data.session.access_token })
  assert.equal(me.status, 200)
  assert.equal(me.body.sub, data.user.id)
})

test('an anonymous session the server ended is replaced by a new anonymous sign-in', async () => {
  const first = (await sdk.auth.signInAnonymously()).data.session
  const revoked = await http(server.base, 'POST', '/auth/v1/revoke', { body: { token: first.refresh_token } })
  assert.equal(revoked.status, 200)
  await sleep(1200) // the SDK refreshes, the server answers invalid_grant, the SDK signs in anonymously again
  const added = await sdk.db.collection('notes').add({ text: 'anonymous again' })
  assert.match(added.id, /^[0-9a-f]{32}$/)
  const now = await session()
  assert.equal(now.scope, 'anonymous')
  assert.notEqual(jwtClaims(now.access_token).sub, first.sub)
  const doc = (await adm.allDocs('notes')).find((d) => d._id === added.id)
  assert.equal(doc._openid, jwtClaims(now.access_token).sub)
})

test('an app of another env (init({env})) signs in there and reads and writes that env', async () => {
  await adm.call('POST', '/admin/v1/envs', { name: 'staging' })
  await adm.call('POST', '/admin/v1/envs/staging/collections', { name: 'notes' })
  const app = sdk.cloudbase.init({ env: 'staging' })
  app.registerHost(server.host, 'http')
  const { data, error } = await app.auth().signInAnonymously()
  assert.equal(error, null)
  assert.equal(jwtClaims(data.session.access_token).env, 'staging')
  const added = await app.database().collection('notes').add({ text: 'in staging' })
  assert.match(added.id, /^[0-9a-f]{32}$/)
  const got = await app.database().collection('notes').get()
  assert.deepEqual(got.data.map((d) => d.text), ['in staging'])
  // it landed in staging, not in default
  const inStaging = await adm.call('GET', `/v1/database/instances/(default)/databases/(default)/collections/notes/documents?env=staging`)
  assert.deepEqual(inStaging.list.map((d) => [d._id, d._openid]), [[added.id, data.user.id]])
  assert.equal((await adm.allDocs('notes')).some((d) => d._id === added.id), false)
})

test('signOut revokes the session; the database then refuses the client', async () => {
  const key = await adm.ticketKey()
  await sdk.auth.signInWithCustomTicket(() => Promise.resolve(mintTicket(key, ENV, 'leaver')))
  const token = (await session()).access_token
  const added = await sdk.db.collection('notes').add({ text: 'mine' })
  assert.ok(added.id)

  const out = await sdk.auth.signOut()
  assert.equal(out.error, null)
  assert.equal(sdk.auth.currentUser, null)
  assert.equal((await sdk.auth.getUser()).data.user, null)

  // the old token is dead on the server
  const me = await http(server.base, 'GET', '/auth/v1/user/me', { token })
  assert.equal(me.status, 401)
  assert.equal(me.body.error, 'unauthenticated')

  // the SDK now sends no token: PRIVATE refuses guests
  const res = await sdk.db.collection('notes').get()
  assert.equal(res.code, 'DATABASE_PERMISSION_DENIED')
  assert.match(res.data.message, /sign in/)
  assert.deepEqual(res.data.list, [])
})
