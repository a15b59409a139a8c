import assert from 'node:assert/strict'
import type { OriginResponse } from '../../src/server/origin/origin.ts'

/** Read a GET answer's whole body (tests only). */
export async function bodyOf (answer: OriginResponse): Promise<Buffer> {
  assert.ok(answer.body !== null, 'a GET answer has a body')
  return await answer.body.readAll(1 << 30)
}

/** Assert that `p` rejects with an instance of `type`, and return it. */
export async function rejectsWith<E extends Error> (p: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  let caught: unknown
  await p.then(() => assert.fail('expected a rejection'), (err: unknown) => { caught = err })
  assert.ok(caught instanceof type, `expected ${type.name}, got ${String(caught)}`)
  return caught
}
