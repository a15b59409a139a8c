import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { Ajv } from 'ajv'
import { Receiver } from '../helpers/receiver.ts'
import { KiB, MiB, makeCollector } from '../helpers/collector-fixture.ts'

// The schema is the one published in docs/report-format.md (its last json block).
const doc = readFileSync(new URL('../../docs/report-format.md', import.meta.url), 'utf8')
const blocks = [...doc.matchAll(/```json\n([\s\S]*?)\n```/g)].map((m) => m[1] as string)
const schema = JSON.parse(blocks.at(-1) as string) as object
const validate = new Ajv({ allErrors: true, strict: true }).compile(schema)

describe('reports match the JSON Schema of docs/report-format.md', () => {
  it('the example body in the document is valid', () => {
    const example = JSON.parse((blocks[0] as string).replaceAll('…', 'x'))
    assert.ok(validate(example), JSON.stringify(validate.errors))
  })

  it('every report delivered over HTTP, split into parts, is valid', async (t) => {
    const receiver = await Receiver.start()
    t.after(() => receiver.close())
    const { collector, clock } = makeCollector({ reportUrl: receiver.url, reportMaxUids: 3 })
    const types = ['ts', 'm3u8', 'm4s', 'mp4', 'key', 'vtt', 'aac', 'static', 'weird']
    for (let i = 0; i < 8; i++) {
      clock.advance(1234)
      collector.record({ uid: `u${i}`, bytes: MiB + i * 7, fileType: types[i % types.length]!, ip: `10.0.0.${i}`, sessionId: i % 2 === 0 ? `s${i}` : undefined })
      collector.record({ uid: `u${i}`, bytes: 3 * KiB, fileType: 'm3u8' })
    }
    await collector.seal({ force: true })
    await collector.deliverPending()
    assert.equal(receiver.reports.length, 3)
    for (const report of receiver.reports) assert.ok(validate(report), JSON.stringify(validate.errors))
    const bad = { ...receiver.reports[0], traffic_details: [{ uid: 'x' }] }
    assert.equal(validate(bad), false, 'the schema can fail')
  })
})
