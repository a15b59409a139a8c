/**
 * The access state every store keeps (src/store/access-store.ts,
 * docs/access.md): one suite over the memory, SQLite and Redis stores, with
 * a second handle on the same data (another process or instance) where the
 * store has one. Times are passed in: a manual clock throughout.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { StoreClosedError } from '../../src/errors.ts'
import type { UsagePolicy } from '../../src/meter/index.ts'
import type { AccessStore, Grant, Session } from '../../src/store/access-store.ts'
import { planGrant } from '../../src/store/access-store.ts'
import { MemoryStore, SqliteStore } from '../../src/store/index.ts'
import { RedisStore } from '../../src/store/redis-store.ts'
import { REDIS_URL, cleanupPrefix, redisOrSkip, redisSuite, uniquePrefix } from '../helpers/redis.ts'

const POLICY: UsagePolicy = { minBytes: 1000, accumulatorTimeoutMs: 10_000, maxIps: 3, maxSessions: 2 }
const T0 = 1_700_000_000_000
const HOUR = 3_600_000
const LIMITS = { perUid: 5, pathsPerNetwork: 3 }

interface Opened {
  access: AccessStore
  /** The same data through another handle (another process's or instance's), when the store has one. */
  other?: AccessStore
  close: () => Promise<void>
}

interface Kind {
  name: string
  skip?: string
  open: (t: TestContext) => Promise<Opened | undefined>
}

const redis = await redisSuite()

const KINDS: Kind[] = [
  {
    name: 'memory',
    async open () {
      const store = new MemoryStore(POLICY)
      return { access: store.access, close: async () => await store.close() }
    }
  },
  {
    name: 'sqlite',
    async open (t) {
      const dir = mkdtempSync(join(tmpdir(), 'streammeter-access-'))
      const a = new SqliteStore(join(dir, 'db.sqlite'), POLICY)
      const b = new SqliteStore(join(dir, 'db.sqlite'), POLICY)
      t.after(async () => {
        await a.close()
        await b.close()
        rmSync(dir, { recursive: true, force: true })
      })
      return { access: a.access, other: b.access, close: async () => await a.close() }
    }
  },
  {
    name: 'redis',
    ...redis,
    async open (t) {
      if (!await redisOrSkip(t)) return undefined
      const prefix = uniquePrefix('access')
      cleanupPrefix(t, prefix)
      const a = await RedisStore.open(REDIS_URL, POLICY, { prefix })
      const b = await RedisStore.open(REDIS_URL, POLICY, { prefix })
      t.after(async () => {
        await a.close()
        await b.close()
      })
      return { access: a.access, other: b.access, close: async () => await a.close() }
    }
  }
]

function grant (more: Partial<Grant> = {}): Grant {
  return {
    uid: 'alice',
    network: '203.0.113.0/24',
    agent: 'agent-1',
    userAgent: 'Player/1.0',
    clientIp: '203.0.113.7',
    directory: '/videos/t1/',
    grantedAt: T0,
    expiresAt: T0 + HOUR,
    ...more
  }
}

function session (more: Partial<Session> = {}): Session {
  return {
    id: 'sess-1',
    uid: 'alice',
    network: '203.0.113.0/24',
    agent: 'agent-1',
    directory: '/videos/t1/',
    expiresAt: T0 + 2 * HOUR,
    ...more
  }
}

const dirs = (grants: readonly Grant[]): string[] => grants.map((g) => `${g.uid} ${g.network} ${g.agent} ${g.directory}`)

for (const kind of KINDS) {
  describe(`access state, ${kind.name} store`, { skip: kind.skip }, () => {
    it('keeps a grant, lists it by uid and by network, and renews it in place', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      const first = await s.access.putGrant(grant(), LIMITS)
      assert.deepEqual(first, { renewed: false, evicted: [] })
      assert.deepEqual(await s.access.grantsOf('alice', T0 + 1), [grant()])
      assert.deepEqual(await s.access.grantsIn('203.0.113.0/24', T0 + 1), [grant()])
      assert.deepEqual(await s.access.grantsIn('198.51.100.0/24', T0 + 1), [])
      assert.deepEqual(await s.access.grantsOf('bob', T0 + 1), [])
      const renewed = grant({ grantedAt: T0 + 1000, expiresAt: T0 + 1000 + HOUR, userAgent: 'Player/1.1', clientIp: '203.0.113.8' })
      assert.deepEqual(await s.access.putGrant(renewed, LIMITS), { renewed: true, evicted: [] })
      assert.deepEqual(await (s.other ?? s.access).grantsOf('alice', T0 + 2000), [renewed])
    })

    it('never returns an expired grant', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      await s.access.putGrant(grant({ expiresAt: T0 + 1000 }), LIMITS)
      assert.equal((await s.access.grantsOf('alice', T0 + 999)).length, 1)
      assert.deepEqual(await s.access.grantsOf('alice', T0 + 1000), [])
      assert.deepEqual(await s.access.grantsIn('203.0.113.0/24', T0 + 1000), [])
      // An expired grant is no renewal and is not counted against the limits.
      assert.deepEqual(await s.access.putGrant(grant({ grantedAt: T0 + 2000, expiresAt: T0 + HOUR }), LIMITS), { renewed: false, evicted: [] })
    })

    it('evicts the oldest directory beyond the paths per network, never the new one', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      const epoch = await s.access.epoch()
      for (let i = 1; i <= 3; i++) await s.access.putGrant(grant({ directory: `/v/${i}/`, grantedAt: T0 + i }), LIMITS)
      assert.equal(await s.access.epoch(), epoch, 'adding within the limits takes nothing back')
      // The same directory with another agent is the same path, and renews it.
      await s.access.putGrant(grant({ directory: '/v/1/', agent: 'agent-2', grantedAt: T0 + 4 }), LIMITS)
      const result = await s.access.putGrant(grant({ directory: '/v/5/', grantedAt: T0 + 5 }), LIMITS)
      assert.deepEqual(dirs(result.evicted), ['alice 203.0.113.0/24 agent-1 /v/2/'])
      assert.deepEqual(dirs(await s.access.grantsOf('alice', T0 + 10)), [
        'alice 203.0.113.0/24 agent-1 /v/1/', 'alice 203.0.113.0/24 agent-1 /v/3/', 'alice 203.0.113.0/24 agent-2 /v/1/', 'alice 203.0.113.0/24 agent-1 /v/5/'
      ])
      // Past the limit twice more: /v/3/ goes, then /v/1/ with both its agents.
      await s.access.putGrant(grant({ directory: '/v/6/', grantedAt: T0 + 6 }), LIMITS)
      const both = await s.access.putGrant(grant({ directory: '/v/7/', grantedAt: T0 + 7 }), LIMITS)
      assert.deepEqual(dirs(both.evicted), ['alice 203.0.113.0/24 agent-1 /v/1/', 'alice 203.0.113.0/24 agent-2 /v/1/'])
      assert.notEqual(await (s.other ?? s.access).epoch(), epoch, 'an eviction moves the epoch')
      // Another uid in the same network has its own count.
      assert.deepEqual((await s.access.putGrant(grant({ uid: 'bob', grantedAt: T0 + 6 }), LIMITS)).evicted, [])
      assert.equal((await s.access.grantsIn('203.0.113.0/24', T0 + 10)).length, 4)
      // The whole network: alice's /v/6/, /v/5/, /v/7/ and bob's grant.
    })

    it('evicts the oldest network+agent pair whole beyond the pairs per uid', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      await s.access.putGrant(grant({ network: '10.0.1.0/24', directory: '/a/', grantedAt: T0 + 1 }), LIMITS)
      await s.access.putGrant(grant({ network: '10.0.1.0/24', directory: '/b/', grantedAt: T0 + 2 }), LIMITS)
      for (let i = 2; i <= 5; i++) await s.access.putGrant(grant({ network: `10.0.${i}.0/24`, grantedAt: T0 + 1 + i }), LIMITS)
      // A pair is as old as its newest grant: renewing one of 10.0.1.0/24's makes the pair the newest.
      await s.access.putGrant(grant({ network: '10.0.1.0/24', directory: '/a/', grantedAt: T0 + 10 }), LIMITS)
      const result = await s.access.putGrant(grant({ network: '10.0.6.0/24', grantedAt: T0 + 11 }), LIMITS)
      assert.deepEqual(dirs(result.evicted), ['alice 10.0.2.0/24 agent-1 /videos/t1/'])
      const left = await s.access.grantsOf('alice', T0 + 20)
      assert.deepEqual(left.map((g) => `${g.network} ${g.directory}`), [
        '10.0.1.0/24 /b/', '10.0.3.0/24 /videos/t1/', '10.0.4.0/24 /videos/t1/', '10.0.5.0/24 /videos/t1/',
        '10.0.1.0/24 /a/', '10.0.6.0/24 /videos/t1/'
      ])
      // Past the limit again: 10.0.3.0/24 is now the oldest pair.
      const next = await s.access.putGrant(grant({ network: '10.0.7.0/24', grantedAt: T0 + 12 }), LIMITS)
      assert.deepEqual(dirs(next.evicted), ['alice 10.0.3.0/24 agent-1 /videos/t1/'])
    })

    it('revokes every grant and session of a uid, moves the epoch, and leaves other uids alone', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      await s.access.putGrant(grant(), LIMITS)
      await s.access.putGrant(grant({ directory: '/videos/t2/', grantedAt: T0 + 1 }), LIMITS)
      await s.access.putGrant(grant({ uid: 'bob' }), LIMITS)
      await s.access.putSessions([session()])
      await s.access.putSessions([session({ id: 'sess-2', directory: '/videos/t2/' })])
      await s.access.putSessions([session({ id: 'sess-bob', uid: 'bob' })])
      const epoch = await s.access.epoch()
      const seen = s.other === undefined ? undefined : await s.other.epoch()
      assert.deepEqual(await s.access.revoke('alice', T0 + 10), { grants: 2, sessions: 2 })
      assert.notEqual(await s.access.epoch(), epoch)
      if (s.other !== undefined) assert.notEqual(await s.other.epoch(), seen, 'the other handle sees the epoch move')
      const reader = s.other ?? s.access
      assert.deepEqual(await reader.grantsOf('alice', T0 + 10), [])
      assert.equal(await reader.session('sess-1', T0 + 10), undefined)
      assert.equal(await reader.session('sess-2', T0 + 10), undefined)
      assert.equal((await reader.session('sess-bob', T0 + 10))?.uid, 'bob')
      assert.deepEqual(dirs(await reader.grantsIn('203.0.113.0/24', T0 + 10)), ['bob 203.0.113.0/24 agent-1 /videos/t1/'])
      assert.deepEqual(await s.access.revoke('nobody', T0 + 10), { grants: 0, sessions: 0 })
    })

    it('keeps a session until it expires and slides it when stored again', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      assert.equal(await s.access.session('sess-1', T0), undefined)
      await s.access.putSessions([session({ expiresAt: T0 + 1000 })])
      assert.deepEqual(await (s.other ?? s.access).session('sess-1', T0 + 999), session({ expiresAt: T0 + 1000 }))
      await s.access.putSessions([session({ expiresAt: T0 + 5000 })])
      assert.deepEqual(await s.access.session('sess-1', T0 + 4999), session({ expiresAt: T0 + 5000 }))
      assert.equal(await s.access.session('sess-1', T0 + 5000), undefined)
    })

    it('stores several sessions at once, and none for an empty list', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      await s.access.putSessions([session(), session({ id: 'sess-2', uid: 'bob' }), session({ id: 'sess-3', expiresAt: T0 + 10 })])
      await s.access.putSessions([])
      const reader = s.other ?? s.access
      assert.equal((await reader.session('sess-2', T0))?.uid, 'bob')
      assert.equal((await reader.session('sess-3', T0 + 9))?.id, 'sess-3')
      assert.deepEqual(await s.access.revoke('alice', T0), { grants: 0, sessions: 2 })
    })

    it('slides only sessions still stored for the same uid: never one revoked or dropped meanwhile', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      await s.access.putSessions([session(), session({ id: 'sess-2' }), session({ id: 'sess-3', uid: 'bob' })])
      await s.access.revoke('bob', T0)
      await s.access.dropSessions(['sess-2'])
      const later = T0 + 3 * HOUR
      await (s.other ?? s.access).slideSessions([session({ expiresAt: later }), session({ id: 'sess-2', expiresAt: later }),
        session({ id: 'sess-3', uid: 'bob', expiresAt: later }), session({ id: 'sess-9', expiresAt: later }), session({ id: 'sess-1', uid: 'mallory', expiresAt: later })])
      assert.equal((await s.access.session('sess-1', T0 + 2 * HOUR + 1))?.uid, 'alice', 'slid: alive past its first expiry')
      assert.equal((await s.access.session('sess-1', later - 1))?.expiresAt, later)
      for (const id of ['sess-2', 'sess-3', 'sess-9']) assert.equal(await s.access.session(id, T0), undefined, id)
      await s.access.slideSessions([])
    })

    it('drops sessions by id and moves the epoch only when one existed', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      await s.access.putSessions([session()])
      await s.access.putSessions([session({ id: 'sess-2' })])
      const epoch = await s.access.epoch()
      await s.access.dropSessions(['none'])
      assert.equal(await s.access.epoch(), epoch)
      await s.access.dropSessions(['sess-1', 'none'])
      assert.notEqual(await s.access.epoch(), epoch)
      assert.equal(await s.access.session('sess-1', T0), undefined)
      assert.equal((await s.access.session('sess-2', T0))?.id, 'sess-2')
      await s.access.dropSessions([])
    })

    it('counts uses of a key across handles', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      assert.equal(await s.access.countUse('k1', T0 + HOUR), 1)
      assert.equal(await (s.other ?? s.access).countUse('k1', T0 + HOUR), 2)
      assert.equal(await s.access.countUse('k2', T0 + HOUR), 1)
      const counts = await Promise.all(Array.from({ length: 20 }, async (_, i) => await (i % 2 === 0 ? s.access : (s.other ?? s.access)).countUse('k3', T0 + HOUR)))
      assert.deepEqual(counts.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1), 'no use is counted twice or lost')
    })

    it('keeps uids, networks and directories apart whatever they hold', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      const odd = grant({ uid: 'a b:c\n{x}*?', directory: '/v/ü %/', userAgent: 'UA "quoted" \\ ü' })
      await s.access.putGrant(odd, LIMITS)
      await s.access.putGrant(grant({ uid: 'a b' }), LIMITS)
      assert.deepEqual(await s.access.grantsOf('a b:c\n{x}*?', T0), [odd])
      assert.equal((await s.access.grantsOf('a b', T0)).length, 1)
      assert.deepEqual(await s.access.revoke('a b', T0), { grants: 1, sessions: 0 })
      assert.deepEqual(await s.access.grantsOf('a b:c\n{x}*?', T0), [odd])
    })

    it('refuses every call once closed', async (t) => {
      const s = await kind.open(t)
      if (s === undefined) return
      await s.close()
      await assert.rejects(s.access.epoch(), StoreClosedError)
      await assert.rejects(s.access.session('x', T0), StoreClosedError)
    })
  })
}

describe('planGrant', () => {
  it('keeps the new grant even when the limits are 1', () => {
    const plan = planGrant([grant({ directory: '/a/' })], grant({ directory: '/b/', grantedAt: T0 + 1 }), { perUid: 1, pathsPerNetwork: 1 })
    assert.deepEqual(plan.keep.map((g) => g.directory), ['/b/'])
    assert.deepEqual(plan.evicted.map((g) => g.directory), ['/a/'])
    assert.equal(plan.renewed, false)
  })
})
