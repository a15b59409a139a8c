import { ACCESS_SCRIPTS } from './redis-access-scripts.ts'
import { FLUSH_SCRIPTS } from './redis-flush-scripts.ts'
import { LEASE_SCRIPTS } from './redis-lease-script.ts'
import { OUTBOX_SCRIPTS } from './redis-outbox-scripts.ts'
import { READ_SCRIPTS } from './redis-read-scripts.ts'
import { SEAL_SCRIPTS } from './redis-seal-scripts.ts'

// The Lua scripts of the redis store, grouped by what they serve; key layout
// in src/store/redis-keys.ts. Each script is one atomic step: Redis runs a
// script to the end before any other command.

/** Every script, by the name it gets on the ioredis client (`defineCommand`). */
export const SCRIPTS = Object.freeze({
  ...LEASE_SCRIPTS,
  ...FLUSH_SCRIPTS,
  ...SEAL_SCRIPTS,
  ...READ_SCRIPTS,
  ...OUTBOX_SCRIPTS,
  ...ACCESS_SCRIPTS
})

/** The name of a script on the ioredis client. */
export type ScriptName = keyof typeof SCRIPTS
