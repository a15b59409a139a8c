import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryStore, openStore } from '../../src/store/index.ts'
import { storeContract } from './store-contract.ts'

storeContract('memory', {
  async create (t, policy) {
    return new MemoryStore(policy)
  }
  // No reopen: a memory store's data ends with the object.
})

describe('openStore memory:', () => {
  it('opens a MemoryStore with the given policy', async (t) => {
    const policy = { minBytes: 5, accumulatorTimeoutMs: 1000, maxIps: 1, maxSessions: 1 }
    const store = await openStore('memory:', policy)
    t.after(() => store.close())
    assert.ok(store instanceof MemoryStore)
    assert.equal(store.kind, 'memory')
    assert.deepEqual({ ...store.policy }, policy)
  })
})
