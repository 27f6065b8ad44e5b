// The database through the unmodified @cloudbase/js-sdk as a signed-in user under the PRIVATE
// preset (reads, writes, aggregate().geoNear), run once per endpoint mode (GATEWAY REST and CLOUD_API `POST /web`) by the two
// database-*.test.js files: each is its own process, so each has its own SDK state and server.
'use strict'

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { startServer, http, admin, sdkApp, signUp, ADMIN_KEY } = require('./harness')

const DB = '/v1/database/instances/(default)/databases/(default)'

function databaseSuite(mode) {
  let server, adm, sdk, db, _, amy
  const todos = () => db.collection('todos')

  before(async () => {
    server = await startServer()
    adm = admin(server)
    await adm.createCollection('todos') // a new collection is PRIVATE
    await adm.createCollection('locked')
    await adm.createCollection('places') // PRIVATE too, with a 2dsphere index
    await adm.call('POST', '/admin/v1/envs/default/collections/places/indexes', { fields: 'location:2dsphere' })
    await adm.setRules('locked', { preset: 'ADMINONLY' })
    amy = await signUp(server, { username: 'amy', password: 'amy password' })
    sdk = sdkApp(server, mode)
    db = sdk.db
    _ = db.command
  })
  after(async () => { if (server) await server.stop() })

  const signInAmy = async () => {
    const { error } = await sdk.auth.signInWithPassword({ username: 'amy', password: 'amy password' })
    assert.equal(error, null)
  }

  test(`${mode}: add one and add many; the server sets _openid to the user`, async () => {
    await signInAmy()
    const one = await todos().add({ title: 'buy milk', done: false, priority: 2, due: new Date(1700000000000) })
    assert.match(one.id, /^[0-9a-f]{32}$/)
    const many = await todos().add([
      { title: 'write docs', done: false, priority: 5, tags: ['work'] },
      { title: 'water plants', done: true, priority: 1 },
      { title: 'file taxes', done: false, priority: 4 },
    ])
    assert.equal(many.ids.length, 3)

    const stored = await adm.allDocs('todos')
    assert.equal(stored.length, 4)
    for (const doc of stored) assert.equal(doc._openid, amy.sub)
    assert.deepEqual(stored.find((d) => d._id === one.id).due, { $date: 1700000000000 })
  })

  test(`${mode}: where, orderBy, skip, limit, field, count; dates come back as Date`, async () => {
    const res = await todos().where({ done: false, priority: _.gte(2) }).orderBy('priority', 'desc').limit(2).get()
    assert.deepEqual(res.data.map((d) => d.title), ['write docs', 'file taxes'])
    assert.equal(res.data[0]._openid, amy.sub)

    const page = await todos().where({ done: false }).orderBy('priority', 'asc').skip(1).limit(5)
      .field({ title: true }).get()
    assert.deepEqual(page.data.map((d) => Object.keys(d).sort()), [['_id', 'title'], ['_id', 'title']])
    assert.deepEqual(page.data.map((d) => d.title), ['file taxes', 'write docs'])

    const milk = await todos().where({ title: 'buy milk' }).get()
    assert.ok(milk.data[0].due instanceof Date)
    assert.equal(milk.data[0].due.getTime(), 1700000000000)

    const byId = await todos().doc(milk.data[0]._id).get()
    assert.equal(byId.data.length, 1)
    assert.equal(byId.data[0].title, 'buy milk')

    assert.equal((await todos().where({ done: false }).count()).total, 3)
    assert.equal((await todos().where({ tags: 'work' }).count()).total, 1)
    assert.equal((await todos().count()).total, 4)
  })

  test(`${mode}: update with operators, doc().update, doc().set replaces and upserts`, async () => {
    const upd = await todos().where({ done: false }).update({ priority: _.inc(10), tags: _.push(['due']) })
    assert.equal(upd.updated, 3)
    const pri = (await todos().where({ done: false }).orderBy('priority', 'asc').get()).data.map((d) => d.priority)
    assert.deepEqual(pri, [12, 14, 15])

    const plants = (await todos().where({ title: 'water plants' }).get()).data[0]
    const one = await todos().doc(plants._id).update({ done: false, 'meta.by': 'sdk' })
    assert.equal(one.updated, 1)
    const after1 = (await todos().doc(plants._id).get()).data[0]
    assert.equal(after1.done, false)
    assert.deepEqual(after1.meta, { by: 'sdk' })

    // set() on an existing document replaces it (keeping _id and _openid)
    const replaced = await todos().doc(plants._id).set({ title: 'water plants twice' })
    assert.equal(replaced.updated, 1)
    const after2 = (await todos().doc(plants._id).get()).data[0]
    assert.deepEqual(Object.keys(after2).sort(), ['_id', '_openid', 'title'])
    assert.equal(after2._openid, amy.sub)

    // set() on a new id creates it; the SDK reports the created id as upsertedId
    const created = await todos().doc('set-new').set({ title: 'created by set', priority: 0 })
    assert.equal(created.updated, 0)
    assert.equal(created.upsertedId, 'set-new')
    const stored = (await adm.allDocs('todos')).find((d) => d._id === 'set-new')
    assert.equal(stored.title, 'created by set')
    assert.equal(stored._openid, amy.sub)
  })

  test(`${mode}: doc().remove and where().remove`, async () => {
    const one = await todos().doc('set-new').remove()
    assert.equal(one.deleted, 1)
    const many = await todos().where({ priority: _.gt(13) }).remove()
    assert.equal(many.deleted, 2)
    assert.deepEqual((await adm.allDocs('todos')).map((d) => d.title).sort(), ['buy milk', 'water plants twice'])
  })

  test(`${mode}: a second user sees none of the first user's documents and cannot change them`, async () => {
    const amyDocs = await adm.allDocs('todos')
    const target = amyDocs[0]._id

    const { data, error } = await sdk.auth.signInAnonymously()
    assert.equal(error, null)
    const bob = data.user.id
    assert.notEqual(bob, amy.sub)

    assert.deepEqual((await todos().get()).data, [])
    assert.equal((await todos().count()).total, 0)
    assert.deepEqual((await todos().doc(target).get()).data, [])
    assert.equal((await todos().doc(target).update({ title: 'hacked' })).updated, 0)
    assert.equal((await todos().where({}).update({ title: 'hacked' })).updated, 0)
    assert.equal((await todos().doc(target).remove()).deleted, 0)

    // his own document is his; amy's are untouched
    const mine = await todos().add({ title: 'bob was here' })
    assert.deepEqual((await todos().get()).data.map((d) => [d._id, d._openid]), [[mine.id, bob]])
    const now = await adm.allDocs('todos')
    assert.deepEqual(now.filter((d) => d._openid === amy.sub), amyDocs)

    // and amy, signed in again, still sees exactly her own
    await signInAmy()
    assert.deepEqual((await todos().get()).data.map((d) => d._id).sort(), amyDocs.map((d) => d._id).sort())
  })

  test(`${mode}: errors arrive as {code, message}: missing collection, permission denied`, async () => {
    await signInAmy()
    const missing = await db.collection('nope').get()
    assert.equal(missing.code, 'DATABASE_COLLECTION_NOT_EXIST')
    const denied = await db.collection('locked').where({}).get()
    assert.equal(denied.code, 'DATABASE_PERMISSION_DENIED')
    const deniedCount = await db.collection('locked').count()

    const deniedAdd = await db.collection('locked').add({ a: 1 })
    const missingUpdate = await db.collection('nope').where({ a: 1 }).update({ a: 2 })
    if (mode === 'CLOUD_API') {
      // the action protocol answers HTTP 200 {requestId, code, message}; the SDK hands it over
      assert.match(missing.message, /collection `nope` does not exist/)
      assert.match(denied.message, /ADMINONLY/)
      assert.equal(deniedCount.code, 'DATABASE_PERMISSION_DENIED')
      assert.equal(deniedAdd.code, 'DATABASE_PERMISSION_DENIED')
      assert.equal(deniedAdd.id, undefined)
      assert.equal(missingUpdate.code, 'DATABASE_COLLECTION_NOT_EXIST')
    } else {
      // GATEWAY answers 4xx {code, message, requestId}; the SDK lifts `code` for get() only.
      assert.match(missing.data.message, /collection `nope` does not exist/)
      assert.deepEqual(missing.data.list, [])
      assert.match(denied.data.message, /ADMINONLY/)
      // js-sdk 3.7.0 quirk (database/src/index.ts gateWayFunc): add/update/remove/count do not
      // look at the reply's `code`, and the Node adapter does not reject non-2xx replies, so the
      // error is dropped: add() resolves without an id. (The web build's fetch rejects instead.)
      assert.equal(deniedAdd.id, undefined)
      assert.equal(deniedAdd.code, undefined)
      assert.equal(missingUpdate.updated, undefined)
      assert.equal(deniedCount.total, undefined)
      // the server did refuse, with the GATEWAY error shape, as the same request shows over HTTP
      const token = (await sdk.auth.getSession()).data.session.access_token
      const raw = await http(server.base, 'POST', `${DB}/collections/locked/documents`, { token, body: { data: [{ a: 1 }] } })
      assert.equal(raw.status, 403)
      assert.equal(raw.body.code, 'DATABASE_PERMISSION_DENIED')
      assert.match(raw.body.requestId, /^[0-9a-f]{32}$/)
    }
    // nothing was written
    const locked = await http(server.base, 'GET', `${DB}/collections/locked/documents`, { token: ADMIN_KEY })
    assert.deepEqual(locked.body.list, [])
  })

  test(`${mode}: aggregate().geoNear: nearest first with distances, only the caller's own documents`, async () => {
    const R = 6378100
    const rad = (x) => (x * Math.PI) / 180
    const metres = ([l1, p1], [l2, p2]) => {
      const h = Math.sin(rad(p2 - p1) / 2) ** 2 + Math.cos(rad(p1)) * Math.cos(rad(p2)) * Math.sin(rad(l2 - l1) / 2) ** 2
      return 2 * R * Math.asin(Math.sqrt(h))
    }
    const centre = [113.3245, 23.1064]
    const places = () => db.collection('places')
    const geoNear = (extra = {}) => places().aggregate()
      .geoNear({ distanceField: 'distance', spherical: true, near: new db.Geo.Point(centre[0], centre[1]), ...extra })
      .end()

    // another user's place, nearer than all of amy's
    assert.equal((await sdk.auth.signInAnonymously()).error, null)
    await places().add({ name: 'bob cafe', kind: 'cafe', location: new db.Geo.Point(113.3246, 23.1064) })

    await signInAmy()
    const amyPlaces = [
      ['tea house', 'tea', [113.3310, 23.1370]],
      ['noodle bar', 'food', [113.3170, 23.0980]],
      ['bookshop', 'books', [113.3210, 23.1190]],
    ]
    await places().add(amyPlaces.map(([name, kind, p]) => ({ name, kind, location: new db.Geo.Point(p[0], p[1]) })))
    const want = amyPlaces.map(([name, , p]) => [name, metres(centre, p)]).sort((a, b) => a[1] - b[1])

    const res = await geoNear({ includeLocs: 'loc' })
    assert.equal(res.code, undefined, JSON.stringify(res))
    assert.deepEqual(res.data.map((d) => d.name), want.map(([n]) => n))
    res.data.forEach((d, i) => {
      assert.ok(Math.abs(d.distance - want[i][1]) < 1, `${d.name}: ${d.distance} vs ${want[i][1]}`)
      assert.equal(d._openid, amy.sub)
      assert.deepEqual(d.loc, d.location) // the SDK turns both GeoJSON values into Geo.Point
    })

    // query (through the SDK's query serializer), maxDistance, and the stages after it
    const food = await geoNear({ query: { kind: _.neq('tea') }, maxDistance: 2000 })
    assert.deepEqual(food.data.map((d) => d.name), ['noodle bar', 'bookshop'])
    const $ = db.command.aggregate
    const counted = await places().aggregate()
      .geoNear({ distanceField: 'd', spherical: true, near: new db.Geo.Point(centre[0], centre[1]) })
      .group({ _id: null, n: $.sum(1), nearest: $.min('$d') })
      .end()
    assert.equal(counted.data.length, 1)
    assert.equal(counted.data[0].n, 3)
    assert.ok(Math.abs(counted.data[0].nearest - want[0][1]) < 1)
  })
}

module.exports = { databaseSuite }
