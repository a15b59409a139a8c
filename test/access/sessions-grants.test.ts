/**
 * Sessions and grants in the access check (docs/access.md#sessions,
 * #grants): the Authorizer over an AccessState over a store's access
 * state, with a manual clock. The servers and several instances are in
 * test/e2e/access-grants.test.ts.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { StoreError } from '../../src/errors.ts'
import { AccessState } from '../../src/server/access/access-state.ts'
import { Authorizer } from '../../src/server/access/authorize.ts'
import type { AccessRequest, Denial, Identity } from '../../src/server/access/authorize.ts'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { SessionIds } from '../../src/server/access/sessions.ts'
import { signedQuery } from '../../src/server/access/url-signer.ts'
import type { AccessStore, Grant, Session } from '../../src/store/access-store.ts'
import { MemoryStore } from '../../src/store/index.ts'

const SECRET = 'sessions-and-grants-secret'
const T0 = 1_800_000_000_000
const UA = 'Player/1.0'
const LIMITS = { perUid: 5, pathsPerNetwork: 3 }

/** One instance: its own cache over `store`, the test's clock. */
interface InstanceOptions {
  grants?: boolean
  open?: string[]
  ttl?: number
  secret?: string
  locked?: boolean
  limits?: { key?: number, playlist?: number }
  allowed?: string[]
}

function instance (store: AccessStore, clock: { now: number }, more: InstanceOptions = {}) {
  const state = new AccessState({ store, ids: new SessionIds(SECRET), sessionTtl: more.ttl ?? 7200, now: () => clock.now })
  const auth = new Authorizer({
    signingSecret: 'secret' in more ? more.secret : SECRET,
    locked: more.locked,
    ips: new ClientIpResolver(['10.0.0.0/8']),
    state,
    grants: more.grants ?? true,
    openExtensions: more.open,
    useLimits: more.limits,
    allowedNetworks: more.allowed,
    now: () => clock.now
  })
  /** The answer to GET (or `method`) /<target> from `client` with these headers. */
  const ask = async (target: string, client = '203.0.113.7', headers: AccessRequest['headers'] = {}, method = 'GET'): Promise<Identity | Denial> => {
    const [path = '', query = ''] = target.split('?')
    return await auth.authorize({ path, query: new URLSearchParams(query), headers: { 'user-agent': UA, 'x-forwarded-for': client, ...headers }, peer: '10.0.0.1', method })
  }
  return { state, auth, ask }
}

function signed (uid: string, path: string, clock: { now: number }): string {
  return `${path}?${signedQuery({ secret: SECRET, uid, path, expires: Math.floor(clock.now / 1000) + 60 })}`
}

function grant (more: Partial<Grant> = {}): Grant {
  return {
    uid: 'alice',
    network: '203.0.113.0/24',
    agent: UA,
    userAgent: UA,
    clientIp: '203.0.113.7',
    directory: '/videos/t1/',
    grantedAt: T0,
    expiresAt: T0 + 3_600_000,
    ...more
  }
}

const cookie = (id: string): AccessRequest['headers'] => ({ cookie: `theme=dark; session_id_fileserver=${id}` })
/** uid and session of an allowed answer; the reason of a denial. */
const outcome = (who: Identity | Denial): string => who.kind === 'allowed' ? `allowed ${who.uid ?? '-'}` : `denied ${who.reason}`

/** An AccessStore whose calls can be counted and made to fail. */
function spied (store: AccessStore): { store: AccessStore, calls: Map<string, number>, down: { on: boolean } } {
  const calls = new Map<string, number>()
  const down = { on: false }
  const wrapped = new Proxy(store, {
    get (target, name: string) {
      const fn = (target as unknown as Record<string, unknown>)[name]
      if (typeof fn !== 'function') return fn
      return async (...args: unknown[]) => {
        calls.set(name, (calls.get(name) ?? 0) + 1)
        if (down.on) throw new StoreError('the store is down')
        return await (fn as (...a: unknown[]) => Promise<unknown>).apply(target, args)
      }
    }
  })
  return { store: wrapped, calls, down }
}

describe('sessions: opened by a signed URL, then the cookie or X-Session-ID lets in', () => {
  it('a signed request opens one session per uid, network, agent and directory; the cookie then lets in its directory', async () => {
    const clock = { now: T0 }
    const { ask } = instance(new MemoryStore(POLICY()).access, clock)
    const first = await ask(signed('alice', 'videos/t1/master.m3u8', clock))
    assert.equal(first.kind, 'allowed')
    const id = first.kind === 'allowed' ? first.session as string : ''
    assert.match(id, /^[A-Za-z0-9_-]{32}$/)
    // The same client again, without the cookie: the same session, not a new one.
    const again = await ask(signed('alice', 'videos/t1/seg1.ts', clock))
    assert.equal(again.kind === 'allowed' ? again.session : '', id)
    // Another network, agent or uid: another session.
    const elsewhere = await ask(signed('alice', 'videos/t1/seg1.ts', clock), '198.51.100.7')
    assert.notEqual(elsewhere.kind === 'allowed' ? elsewhere.session : id, id)
    // Plain URLs with the session: allowed and metered to its uid, deeper directories included.
    for (const headers of [cookie(id), { 'x-session-id': id }]) {
      const who = await ask('videos/t1/720p/seg2.ts', '203.0.113.99', headers)
      assert.equal(outcome(who), 'allowed alice', JSON.stringify(headers))
      assert.equal(who.kind === 'allowed' ? who.session : '', id)
    }
    assert.equal(outcome(await ask('videos/t1/seg2.ts?uid=alice', '203.0.113.7', cookie(id))), 'allowed alice', 'its own uid may be named')
  })

  it('refuses a session replayed from another network or User-Agent, outside its directory, or for another uid', async () => {
    const clock = { now: T0 }
    const { ask } = instance(new MemoryStore(POLICY()).access, clock)
    const opened = await ask(signed('alice', 'videos/t1/master.m3u8', clock))
    const id = opened.kind === 'allowed' ? opened.session as string : ''
    assert.equal(outcome(await ask('videos/t1/seg.ts', '198.51.100.7', cookie(id))), 'denied bad_signature', 'another network')
    assert.equal(outcome(await ask('videos/t1/seg.ts', '2001:db8::1', cookie(id))), 'denied bad_signature', 'another family')
    assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', { ...cookie(id), 'user-agent': 'curl/8' })), 'denied bad_signature', 'another agent')
    assert.equal(outcome(await ask('videos/t2/seg.ts', '203.0.113.7', cookie(id))), 'denied bad_signature', 'outside its directory')
    assert.equal(outcome(await ask('videos/seg.ts', '203.0.113.7', cookie(id))), 'denied bad_signature', 'its parent')
    assert.equal(outcome(await ask('videos/t1/seg.ts?uid=mallory', '203.0.113.7', cookie(id))), 'denied uid_mismatch', 'a uid parameter of someone else')
  })

  it('an id nobody issued is refused without asking the store', async () => {
    const clock = { now: T0 }
    const spy = spied(new MemoryStore(POLICY()).access)
    const { ask } = instance(spy.store, clock)
    for (let i = 0; i < 50; i++) {
      const forged = randomBytes(24).toString('base64url')
      assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', cookie(forged))), 'denied bad_signature')
    }
    assert.equal(spy.calls.get('session') ?? 0, 0)
    // An id made with another key is refused the same way.
    const other = new SessionIds('another-key').idOf({ uid: 'alice', network: '203.0.113.0/24', agent: 'x', directory: '/videos/t1/' })
    assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', cookie(other))), 'denied bad_signature')
    assert.equal(spy.calls.get('session') ?? 0, 0)
  })

  it('expires SESSION_TTL (less up to a minute) after its last use, sliding; the store is written once a minute at most', async () => {
    const clock = { now: T0 }
    const spy = spied(new MemoryStore(POLICY()).access)
    const { ask, state } = instance(spy.store, clock, { ttl: 600 })
    const opened = await ask(signed('alice', 'videos/t1/master.m3u8', clock))
    const id = opened.kind === 'allowed' ? opened.session as string : ''
    for (let i = 0; i < 20; i++) {
      clock.now += 5_000 // 100 s of use: a write at most every 60 s
      assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'allowed alice')
      await state.flushWrites()
    }
    assert.equal(spy.calls.get('putSessions'), 1, 'opened once')
    assert.equal(spy.calls.get('slideSessions'), 1, 'slid once in 100 s')
    clock.now += 530_000 // within SESSION_TTL of the last use, less the minute a slide may lag
    assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'allowed alice')
    clock.now += 601_000
    assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'denied bad_signature', 'unused for longer than SESSION_TTL')
  })

  it('a signed URL comes before a session: it bills its own uid and opens its own session', async () => {
    const clock = { now: T0 }
    const { ask } = instance(new MemoryStore(POLICY()).access, clock)
    const a = await ask(signed('alice', 'videos/t1/master.m3u8', clock))
    const idA = a.kind === 'allowed' ? a.session as string : ''
    const b = await ask(signed('bob', 'videos/t1/seg.ts', clock), '203.0.113.7', cookie(idA))
    assert.equal(outcome(b), 'allowed bob')
    assert.notEqual(b.kind === 'allowed' ? b.session : idA, idA)
  })
})

describe('grants: a platform backend lets a uid in from one network and User-Agent', () => {
  it('lets in the granted directory from the network with the agent, metered to the uid, and opens a session', async () => {
    const clock = { now: T0 }
    const { ask, state } = instance(new MemoryStore(POLICY()).access, clock)
    assert.equal(outcome(await ask('videos/t1/seg.ts')), 'denied bad_signature', 'nothing granted yet')
    await state.grant(grant(), LIMITS)
    const who = await ask('videos/t1/720p/seg.ts', '203.0.113.200')
    assert.equal(outcome(who), 'allowed alice')
    const id = who.kind === 'allowed' ? who.session as string : ''
    assert.match(id, /^[A-Za-z0-9_-]{32}$/)
    assert.equal(outcome(await ask('videos/t1/seg.ts?uid=alice')), 'allowed alice')
    assert.equal(outcome(await ask('videos/t1/seg.ts?uid=mallory')), 'denied uid_mismatch')
    assert.equal(outcome(await ask('videos/t2/seg.ts')), 'denied bad_signature', 'outside the directory')
    assert.equal(outcome(await ask('videos/t1/seg.ts', '198.51.100.7')), 'denied bad_signature', 'another network')
    assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', { 'user-agent': 'curl/8' })), 'denied bad_signature', 'another agent')
    // Past GRANT_TTL the grant is gone; its session lives on (docs/access.md#grants).
    clock.now = T0 + 3_600_000
    assert.equal(outcome(await ask('videos/t1/seg.ts')), 'denied bad_signature')
    assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'allowed alice')
  })

  it('picks the uid named by the request, else the deepest directory, else the newest grant', async () => {
    const clock = { now: T0 + 10 }
    const { ask, state } = instance(new MemoryStore(POLICY()).access, clock)
    await state.grant(grant({ uid: 'household-1', directory: '/videos/' }), LIMITS)
    await state.grant(grant({ uid: 'household-2', directory: '/videos/t1/', grantedAt: T0 + 1 }), LIMITS)
    await state.grant(grant({ uid: 'household-3', directory: '/videos/t1/', grantedAt: T0 + 2 }), LIMITS)
    assert.equal(outcome(await ask('videos/t1/seg.ts')), 'allowed household-3')
    assert.equal(outcome(await ask('videos/t2/seg.ts')), 'allowed household-1')
    assert.equal(outcome(await ask('videos/t1/seg.ts?uid=household-1')), 'allowed household-1')
  })

  it('without ACCESS_API_KEY no grant is looked up', async () => {
    const clock = { now: T0 }
    const spy = spied(new MemoryStore(POLICY()).access)
    const { ask, state } = instance(spy.store, clock, { grants: false })
    await state.grant(grant(), LIMITS)
    assert.equal(outcome(await ask('videos/t1/seg.ts')), 'denied bad_signature')
    assert.equal(spy.calls.get('grantsIn') ?? 0, 0)
  })

  it('with ACCESS_API_KEY alone (no secret) grants and their sessions let in', async () => {
    const clock = { now: T0 }
    const { ask, state } = instance(new MemoryStore(POLICY()).access, clock, { secret: undefined, locked: true })
    await state.grant(grant(), LIMITS)
    const who = await ask('videos/t1/seg.ts')
    assert.equal(outcome(who), 'allowed alice')
    assert.equal(outcome(await ask('videos/t1/seg.ts?uid=bob', '198.51.100.7')), 'denied bad_signature')
  })

  it('a network\'s grants are asked of the store once a second at most, and a burst asks once', async () => {
    const clock = { now: T0 }
    const spy = spied(new MemoryStore(POLICY()).access)
    const { ask, state } = instance(spy.store, clock)
    await state.grant(grant(), LIMITS)
    await Promise.all(Array.from({ length: 50 }, async () => await ask('videos/t1/seg.ts')))
    for (let i = 0; i < 50; i++) await ask('videos/t1/seg.ts')
    assert.equal(spy.calls.get('grantsIn'), 1)
    clock.now += 1000
    await ask('videos/t1/seg.ts')
    assert.equal(spy.calls.get('grantsIn'), 2)
  })
})

describe('revocation, open extensions and a store that does not answer', () => {
  it('DELETE stops the uid\'s grants and sessions here at once, and on another instance at its next epoch read', async () => {
    const clock = { now: T0 }
    const shared = new MemoryStore(POLICY()).access
    const a = instance(shared, clock)
    const b = instance(shared, clock)
    await a.state.grant(grant(), LIMITS)
    await b.state.pollEpoch()
    const viaGrant = await b.ask('videos/t1/seg.ts')
    const id = viaGrant.kind === 'allowed' ? viaGrant.session as string : ''
    const signedSession = await b.ask(signed('alice', 'videos/t9/master.m3u8', clock))
    const id9 = signedSession.kind === 'allowed' ? signedSession.session as string : ''
    assert.equal(outcome(await a.ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'allowed alice', 'A knows the session B opened')
    await new Promise((resolve) => setImmediate(resolve)) // B's session writes land
    assert.deepEqual(await a.state.revoke('alice'), { grants: 1, sessions: 2 })
    assert.equal(outcome(await a.ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'denied bad_signature', 'A: at once')
    assert.equal(outcome(await b.ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'allowed alice', 'B: still cached until it reads the epoch')
    await b.state.pollEpoch()
    assert.equal(outcome(await b.ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'denied bad_signature')
    assert.equal(outcome(await b.ask('videos/t9/seg.ts', '203.0.113.7', cookie(id9))), 'denied bad_signature')
    assert.equal(outcome(await b.ask('videos/t1/seg.ts')), 'denied bad_signature')
  })

  it('a lookup in flight when the cache is dropped does not cache what was just taken back', async () => {
    const clock = { now: T0 }
    const shared = new MemoryStore(POLICY()).access
    const a = instance(shared, clock)
    const opened = await a.ask(signed('alice', 'videos/t1/master.m3u8', clock))
    const id = opened.kind === 'allowed' ? opened.session as string : ''
    await a.state.flushWrites()
    // B's store answers the session, then holds the answer until released.
    let release = (): void => {}
    const held = new Promise<void>((resolve) => { release = resolve })
    const slowSession = async (sid: string, now: number): Promise<Session | undefined> => {
      const found = await shared.session(sid, now)
      await held
      return found
    }
    const slow = new Proxy(shared, {
      get: (target, name: string) => name === 'session' ? slowSession : (target as unknown as Record<string, (...a: unknown[]) => unknown>)[name]?.bind(target)
    })
    const b = instance(slow, clock)
    const first = b.ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))
    await new Promise((resolve) => setImmediate(resolve))
    await a.state.revoke('alice')
    b.state.forget() // B's next epoch read
    release()
    assert.equal(outcome(await first), 'allowed alice', 'a request in flight finishes as it began')
    assert.equal(outcome(await b.ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'denied bad_signature', 'nothing stale was cached')
  })

  it('an open extension is metered to a matching session or grant, whatever its directory, else to nobody', async () => {
    const clock = { now: T0 }
    const { ask, state } = instance(new MemoryStore(POLICY()).access, clock, { open: ['ts'] })
    assert.equal(outcome(await ask('cdn/seg.ts')), 'allowed -')
    const opened = await ask(signed('alice', 'videos/t1/master.m3u8', clock), '198.51.100.7')
    const id = opened.kind === 'allowed' ? opened.session as string : ''
    assert.equal(outcome(await ask('cdn/seg.ts', '198.51.100.7', cookie(id))), 'allowed alice')
    assert.equal(outcome(await ask('cdn/seg.m4s', '198.51.100.7', cookie(id))), 'denied bad_signature', 'not open, not in the session\'s directory')
    await state.grant(grant({ uid: 'bob' }), LIMITS)
    assert.equal(outcome(await ask('cdn/seg.ts')), 'allowed bob')
    assert.equal(outcome(await ask('cdn/seg.ts', '192.0.2.1')), 'allowed -')
  })

  it('fails closed while the store does not answer: 503 store_unavailable; open files are still served, unmetered', async () => {
    const clock = { now: T0 }
    const spy = spied(new MemoryStore(POLICY()).access)
    const { ask, state } = instance(spy.store, clock, { open: ['ts'] })
    const opened = await ask(signed('alice', 'videos/t1/master.m3u8', clock))
    const id = opened.kind === 'allowed' ? opened.session as string : ''
    await new Promise((resolve) => setImmediate(resolve))
    state.forget()
    spy.down.on = true
    const refused = await ask('videos/t1/seg.m4s', '203.0.113.7', cookie(id))
    assert.equal(outcome(refused), 'denied store_unavailable')
    assert.equal(refused.kind === 'denied' ? refused.error.statusCode : 0, 503)
    assert.equal(outcome(await ask('videos/t1/seg.ts', '203.0.113.7', cookie(id))), 'allowed -')
    // A signed URL needs no store: still allowed (its session is written later).
    assert.equal(outcome(await ask(signed('alice', 'videos/t1/seg.m4s', clock))), 'allowed alice')
    spy.down.on = false
    clock.now += 1000
    assert.equal(outcome(await ask('videos/t1/seg.m4s', '203.0.113.7', cookie(id))), 'allowed alice')
  })

  it('drops what it cached when the epoch cannot be read for a second', async () => {
    const clock = { now: T0 }
    const spy = spied(new MemoryStore(POLICY()).access)
    const { ask, state } = instance(spy.store, clock)
    await state.grant(grant(), LIMITS)
    await state.pollEpoch()
    assert.equal(outcome(await ask('videos/t1/seg.ts')), 'allowed alice')
    spy.down.on = true
    await assert.rejects(state.pollEpoch())
    assert.equal(outcome(await ask('videos/t1/seg.ts')), 'allowed alice', 'cached, within the second')
    await new Promise((resolve) => setTimeout(resolve, 1050))
    await assert.rejects(state.pollEpoch())
    clock.now += 500 // the grants entry itself is still fresh by its own clock
    assert.equal(outcome(await ask('videos/t1/seg.ts')), 'denied store_unavailable')
  })
})

describe('use limits: KEY_MAX_USES and PLAYLIST_MAX_USES', () => {
  it('a signed key URL answers KEY_MAX_USES GETs, whichever encoding its token is in; HEAD is free; other URLs count apart', async () => {
    const clock = { now: T0 }
    const { ask } = instance(new MemoryStore(POLICY()).access, clock, { limits: { key: 2 } })
    const url = signed('alice', 'videos/t1/enc.key', clock)
    const token = new URLSearchParams(url.split('?')[1]).get('token') as string
    const base64 = url.replace(token, Buffer.from(token, 'hex').toString('base64url'))
    assert.equal(outcome(await ask(url, '203.0.113.7', {}, 'HEAD')), 'allowed alice')
    assert.equal(outcome(await ask(url)), 'allowed alice')
    assert.equal(outcome(await ask(base64)), 'allowed alice')
    const third = await ask(url)
    assert.equal(outcome(third), 'denied use_limit')
    assert.equal(third.kind === 'denied' ? `${third.error.statusCode} ${third.error.code}` : '', '403 SM_ERR_USE_LIMIT')
    assert.equal(outcome(await ask(base64)), 'denied use_limit')
    // Another uid, another expiry, another key: their own counts. Segments and playlists: no limit.
    assert.equal(outcome(await ask(signed('bob', 'videos/t1/enc.key', clock))), 'allowed bob')
    clock.now += 1000
    assert.equal(outcome(await ask(signed('alice', 'videos/t1/enc.key', clock))), 'allowed alice')
    for (let i = 0; i < 3; i++) assert.equal(outcome(await ask(signed('alice', 'videos/t1/master.m3u8', clock))), 'allowed alice')
  })

  it('a session or grant counts per session and path; an allowed network is not limited', async () => {
    const clock = { now: T0 }
    const { ask, state } = instance(new MemoryStore(POLICY()).access, clock, { limits: { key: 1, playlist: 2 }, allowed: ['192.0.2.0/24'] })
    await state.grant(grant(), LIMITS)
    assert.equal(outcome(await ask('videos/t1/a.key')), 'allowed alice')
    assert.equal(outcome(await ask('videos/t1/a.key')), 'denied use_limit')
    assert.equal(outcome(await ask('videos/t1/b.key')), 'allowed alice')
    assert.equal(outcome(await ask('videos/t1/index.m3u8')), 'allowed alice')
    assert.equal(outcome(await ask('videos/t1/index.m3u8')), 'allowed alice')
    assert.equal(outcome(await ask('videos/t1/index.m3u8')), 'denied use_limit')
    for (let i = 0; i < 3; i++) assert.equal(outcome(await ask('videos/t1/a.key?uid=cdn', '192.0.2.9')), 'allowed cdn')
  })

  it('counts are shared by instances on one store, and fail closed when it does not answer', async () => {
    const clock = { now: T0 }
    const spy = spied(new MemoryStore(POLICY()).access)
    const a = instance(spy.store, clock, { limits: { key: 3 } })
    const b = instance(spy.store, clock, { limits: { key: 3 } })
    const url = signed('alice', 'videos/t1/enc.key', clock)
    const answers = await Promise.all([a, b, a, b, a].map(async (i) => outcome(await i.ask(url))))
    assert.deepEqual(answers.sort(), ['allowed alice', 'allowed alice', 'allowed alice', 'denied use_limit', 'denied use_limit'])
    spy.down.on = true
    const refused = await a.ask(signed('carol', 'videos/t1/enc.key', clock))
    assert.equal(outcome(refused), 'denied store_unavailable')
    assert.equal(refused.kind === 'denied' ? refused.error.statusCode : 0, 503)
    assert.equal(outcome(await a.ask(signed('carol', 'videos/t1/seg.ts', clock))), 'allowed carol', 'unlimited files need no store')
  })
})

function POLICY () {
  return { minBytes: 0, accumulatorTimeoutMs: 60_000, maxIps: 3, maxSessions: 3 }
}
