/**
 * wrk (Debian's `wrk` package) as the load generator of the end-to-end run:
 * a C client, so on a small machine it leaves more CPU to the servers than
 * the undici loops do. One wrk per server, one thread each; a Lua script
 * picks a random file and uid per request and sums the body bytes of the
 * 200 responses.
 */
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** What the wrk processes together read. */
export interface WrkLoad {
  /** Completed responses. */
  requests: number
  /** Completed responses other than 200. */
  failures: number
  /** Body bytes of the completed 200 responses. */
  bytes: number
}

/** True when a `wrk` binary answers. */
export function haveWrk (): boolean {
  return spawnSync('wrk', ['--version']).error === undefined
}

const SCRIPT = (files: number, uids: number): string => `
local threads, n = {}, 0
function setup (thread)
  n = n + 1
  thread:set('id', n)
  table.insert(threads, thread)
end
function init (args)
  math.randomseed(id * 7919 + os.time())
  bytes, ok, bad = 0, 0, 0
end
function request ()
  return wrk.format('GET', string.format('/seg-%03d.ts?uid=u%08d', math.random(0, ${files - 1}), math.random(0, ${uids - 1})))
end
function response (status, headers, body)
  if status == 200 then
    ok = ok + 1
    bytes = bytes + #body
  else
    bad = bad + 1
  end
end
function done (summary, latency, requests)
  local b, o, x = 0, 0, 0
  for _, t in ipairs(threads) do
    b, o, x = b + t:get('bytes'), o + t:get('ok'), x + t:get('bad')
  end
  io.write(string.format('WRK_RESULT {"bytes":%.0f,"ok":%.0f,"bad":%.0f}\\n', b, o, x))
end
`

/** Load every URL with `connections / urls.length` connections for `seconds`; the script goes to `dir`. */
export async function wrkLoad (urls: readonly string[], connections: number, seconds: number, files: number, uids: number, dir: string): Promise<WrkLoad> {
  const script = join(dir, 'load.lua')
  writeFileSync(script, SCRIPT(files, uids))
  const perUrl = Math.ceil(connections / urls.length)
  const runs = urls.map((url) => new Promise<WrkLoad>((resolve, reject) => {
    const child = spawn('wrk', ['-t1', `-c${perUrl}`, `-d${seconds}s`, '-s', script, url], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => { out += chunk })
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => { out += chunk })
    child.on('error', reject)
    child.on('close', (code) => {
      const line = /WRK_RESULT (\{.*\})/.exec(out)?.[1]
      if (code !== 0 || line === undefined) {
        reject(new Error(`wrk exited ${String(code)}: ${out.slice(-1000)}`))
        return
      }
      const r = JSON.parse(line) as { bytes: number, ok: number, bad: number }
      resolve({ requests: r.ok + r.bad, failures: r.bad, bytes: r.bytes })
    })
  }))
  const all = await Promise.all(runs)
  return all.reduce((a, b) => ({ requests: a.requests + b.requests, failures: a.failures + b.failures, bytes: a.bytes + b.bytes }))
}
