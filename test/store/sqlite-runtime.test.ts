/**
 * The SQLite store refuses a Node.js its native addon aborts on
 * (src/store/sqlite-runtime.ts): better-sqlite3 12 on Node 24.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { sqliteRuntimeProblem } from '../../src/store/sqlite-runtime.ts'

describe('sqliteRuntimeProblem', () => {
  it('refuses better-sqlite3 12 on Node 24 and later, naming both versions', () => {
    for (const node of ['24.0.0', '24.21.0', '26.10.0']) {
      const problem = sqliteRuntimeProblem(node, '12.11.1') ?? ''
      assert.ok(problem.includes(`better-sqlite3 12.11.1 aborts the process on Node.js ${node}`), problem)
      assert.match(problem, /Node\.js 20 or 22/)
    }
  })

  it('accepts Node 20 and 22 with better-sqlite3 12, and Node 24 with 13', () => {
    assert.equal(sqliteRuntimeProblem('20.20.2', '12.11.1'), undefined)
    assert.equal(sqliteRuntimeProblem('22.23.3', '12.11.1'), undefined)
    assert.equal(sqliteRuntimeProblem('24.21.0', '13.0.3'), undefined)
  })

  it('accepts this process: the store opens on the runtime the tests run on', () => {
    assert.equal(sqliteRuntimeProblem(), undefined)
  })
})
