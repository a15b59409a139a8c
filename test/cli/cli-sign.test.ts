import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { main } from '../../src/cli/main.ts'
import type { Env } from '../../src/config/index.ts'
import { checkSignedRequest } from '../../src/server/access/url-signer.ts'

const NOW = Date.UTC(2026, 0, 1) // ms
const NOW_S = NOW / 1000

const dirs: string[] = []
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })
function workdir (dotenv?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-sign-'))
  dirs.push(dir)
  if (dotenv !== undefined) writeFileSync(join(dir, '.env'), dotenv)
  return dir
}
const empty = workdir()

/** Runs `streammeter sign …` in-process. */
async function sign (args: string[], env: Env = {}, cwd = empty): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await main(['sign', ...args], env, {
    cwd,
    now: () => NOW,
    stdout: { write: (s: string) => { out += s } },
    stderr: { write: (s: string) => { err += s } }
  })
  return { code, out, err }
}

function hmac (secret: string, message: string): string {
  return createHmac('sha256', secret).update(message, 'utf8').digest('hex')
}

describe('streammeter sign', () => {
  it('prints a path whose token is HMAC-SHA256(secret, "U:P:E") in lowercase hex', async () => {
    const { code, out, err } = await sign(['--uid', 'user-42', '--path', '/videos/v1/index.m3u8', '--ttl', '600', '--secret', 's3cret'])
    assert.equal(code, 0, err)
    assert.ok(out.endsWith('\n'))
    const url = new URL(out.trim(), 'http://proxy.test')
    assert.equal(url.pathname, '/videos/v1/index.m3u8')
    assert.deepEqual([...url.searchParams.keys()], ['uid', 'expires', 'token'])
    assert.equal(url.searchParams.get('uid'), 'user-42')
    assert.equal(url.searchParams.get('expires'), String(NOW_S + 600))
    assert.equal(url.searchParams.get('token'), hmac('s3cret', `user-42:videos/v1/index.m3u8:${NOW_S + 600}`))
    assert.match(url.searchParams.get('token') ?? '', /^[0-9a-f]{64}$/)
  })

  it('signs the decoded path and prints it percent-encoded segment by segment', async () => {
    const path = '/my videos/100%/ünï#1?.mp4'
    const { code, out } = await sign(['--uid', 'a b&c=d', '--path', path, '--secret', 'k'])
    assert.equal(code, 0)
    const printed = out.trim()
    assert.ok(printed.startsWith('/my%20videos/100%25/%C3%BCn%C3%AF%231%3F.mp4?uid=a%20b%26c%3Dd&'), printed)
    const url = new URL(printed, 'http://proxy.test')
    const decodedPath = url.pathname.split('/').map(decodeURIComponent).join('/')
    assert.equal(decodedPath, path)
    const expires = NOW_S + 3600 // the default ttl
    assert.equal(url.searchParams.get('uid'), 'a b&c=d')
    assert.equal(url.searchParams.get('expires'), String(expires))
    assert.equal(url.searchParams.get('token'), hmac('k', `a b&c=d:${path.slice(1)}:${expires}`))
  })

  it('prints what the server\'s own check accepts', async () => {
    const { out } = await sign(['--uid', 'u1', '--path', 'hls/a.ts', '--ttl', '5', '--secret', 'k'])
    const url = new URL(out.trim(), 'http://proxy.test')
    assert.equal(url.pathname, '/hls/a.ts') // a missing leading slash is added
    const req = {
      secret: 'k',
      uid: url.searchParams.get('uid') ?? undefined,
      path: 'hls/a.ts',
      expires: url.searchParams.get('expires') ?? undefined,
      token: url.searchParams.get('token') ?? undefined
    }
    assert.equal(checkSignedRequest({ ...req, now: NOW_S }), 'ok')
    assert.equal(checkSignedRequest({ ...req, now: NOW_S + 6 }), 'expired')
    assert.equal(checkSignedRequest({ ...req, secret: 'other', now: NOW_S }), 'bad')
  })

  it('takes the secret from SIGNING_SECRET, the environment over .env, the flag over both', async () => {
    const cwd = workdir('SIGNING_SECRET=from-dotenv\n')
    const token = async (args: string[], env: Env): Promise<string | null> => {
      const { code, out } = await sign(['--uid', 'u', '--path', '/f.mp4', ...args], env, cwd)
      assert.equal(code, 0)
      return new URL(out.trim(), 'http://x').searchParams.get('token')
    }
    const expect = (secret: string): string => hmac(secret, `u:f.mp4:${NOW_S + 3600}`)
    assert.equal(await token([], {}), expect('from-dotenv'))
    assert.equal(await token([], { SIGNING_SECRET: 'from-env' }), expect('from-env'))
    assert.equal(await token(['--secret', 'from-flag'], { SIGNING_SECRET: 'from-env' }), expect('from-flag'))
  })

  it('does not fail over unrelated invalid settings', async () => {
    const { code } = await sign(['--uid', 'u', '--path', '/f', '--secret', 'k'], { PORT: 'nope', TRAFFIC_FOO: '1' })
    assert.equal(code, 0)
  })
})

describe('streammeter sign: bad usage exits 2 naming the problem', () => {
  const cases: Array<[string, string[], Env, RegExp]> = [
    ['no secret', ['--uid', 'u', '--path', '/p'], {}, /SIGNING_SECRET: is not set/],
    // The server refuses such a secret: a URL signed with it could never verify.
    ['a secret with a space', ['--uid', 'u', '--path', '/p', '--secret', 'two words'], {}, /--secret: must be a single token/],
    ['SIGNING_SECRET with a newline', ['--uid', 'u', '--path', '/p'], { SIGNING_SECRET: 'abc\ndef' }, /SIGNING_SECRET: must be a single token/],
    ['no uid', ['--path', '/p', '--secret', 'k'], {}, /--uid: is required/],
    ['no path', ['--uid', 'u', '--secret', 'k'], {}, /--path: is required/],
    ['a uid with ":"', ['--uid', 'a:b', '--path', '/p', '--secret', 'k'], {}, /--uid: must not contain ":"/],
    ['a dot-dot path', ['--uid', 'u', '--path', '/a/../b', '--secret', 'k'], {}, /--path: must be a file path/],
    ['an empty segment', ['--uid', 'u', '--path', '/a//b', '--secret', 'k'], {}, /--path: must be a file path/],
    ['a directory path', ['--uid', 'u', '--path', '/', '--secret', 'k'], {}, /--path: must be a file path/],
    ['a zero ttl', ['--uid', 'u', '--path', '/p', '--ttl', '0', '--secret', 'k'], {}, /--ttl: must be a positive whole number/],
    ['a fractional ttl', ['--uid', 'u', '--path', '/p', '--ttl', '1.5', '--secret', 'k'], {}, /--ttl: must be a positive whole number/],
    ['an empty secret flag', ['--uid', 'u', '--path', '/p', '--secret='], {}, /--secret: needs a value/],
    ['a flag without its value', ['--uid', '--path', '/p', '--secret', 'k'], {}, /--uid: needs a value/],
    ['an unknown flag', ['--uid', 'u', '--path', '/p', '--secret', 'k', '--base', 'x'], {}, /--base: unknown flag/],
    ['a stray argument', ['--uid', 'u', '--path', '/p', 'extra'], { SIGNING_SECRET: 'k' }, /unexpected argument/]
  ]
  for (const [what, args, env, message] of cases) {
    it(what, async () => {
      const { code, out, err } = await sign(args, env)
      assert.equal(code, 2)
      assert.equal(out, '')
      assert.match(err, message)
      assert.ok(err.startsWith('streammeter sign: '), err)
    })
  }

  it('--help exits 0 with the usage', async () => {
    const { code, out } = await sign(['--help'])
    assert.equal(code, 0)
    assert.match(out, /Usage: streammeter sign --uid U --path \/p/)
  })
})

describe('streammeter sign --scope', () => {
  it('prints a token valid for every path under the directory, and only there, as the server checks it', async () => {
    const { code, out, err } = await sign(['--uid', 'u1', '--scope', '/videos/t1/', '--path', '/videos/t1/master.m3u8', '--secret', 's3cret'])
    assert.equal(code, 0, err)
    const url = new URL(out.trim(), 'http://proxy.test')
    assert.equal(url.pathname, '/videos/t1/master.m3u8')
    assert.deepEqual([...url.searchParams.keys()], ['uid', 'expires', 'scope', 'token'])
    assert.equal(url.searchParams.get('scope'), '/videos/t1/')
    const expires = url.searchParams.get('expires')!
    assert.equal(url.searchParams.get('token'), hmac('s3cret', `streammeter-token-v2\nuid=u1\nscope=/videos/t1/\nexpires=${expires}`))
    const verdict = (path: string): string => checkSignedRequest({
      secret: 's3cret', uid: 'u1', path, expires, token: url.searchParams.get('token')!, scope: url.searchParams.get('scope')!, now: NOW_S
    })
    assert.equal(verdict('videos/t1/master.m3u8'), 'ok')
    assert.equal(verdict('videos/t1/720p/seg-1.ts'), 'ok')
    assert.equal(verdict('videos/t2/seg-1.ts'), 'bad')

    const query = await sign(['--uid', 'u1', '--scope', '/videos/t1/', '--secret', 's3cret'])
    assert.equal(query.code, 0)
    assert.equal(query.out.trim(), url.search)
  })

  it('refuses a scope that is no directory, and a path outside it (exit 2)', async () => {
    for (const args of [['--scope', 'videos/'], ['--scope', '/videos'], ['--scope', '/a/../b/'], ['--scope', '/videos/', '--path', '/other/a.ts']]) {
      const { code, err } = await sign(['--uid', 'u1', '--secret', 's', ...args])
      assert.equal(code, 2, args.join(' '))
      assert.match(err, /--scope|--path/)
    }
  })
})

describe('streammeter sign --ip', () => {
  it('binds the URL to a client address or block, in one spelling, as the server checks it', async () => {
    const { code, out, err } = await sign(['--uid', 'u1', '--path', '/videos/a.ts', '--ip', '2001:DB8:0::/32', '--secret', 's3cret'])
    assert.equal(code, 0, err)
    const url = new URL(out.trim(), 'http://proxy.test')
    assert.deepEqual([...url.searchParams.keys()], ['uid', 'expires', 'ip', 'token'])
    assert.equal(url.searchParams.get('ip'), '2001:db8::/32')
    const verdict = (clientIp: string): string => checkSignedRequest({
      secret: 's3cret', uid: 'u1', path: 'videos/a.ts', expires: url.searchParams.get('expires')!, token: url.searchParams.get('token')!, ip: url.searchParams.get('ip')!, clientIp, now: NOW_S
    })
    assert.equal(verdict('2001:db8:1::1'), 'ok')
    assert.equal(verdict('203.0.113.7'), 'ip-mismatch')
    const scoped = await sign(['--uid', 'u1', '--scope', '/videos/', '--ip', '203.0.113.7', '--secret', 's3cret'])
    assert.equal(scoped.code, 0, scoped.err)
    assert.match(scoped.out, /^\?uid=u1&expires=\d+&scope=\/videos\/&ip=203\.0\.113\.7&token=[0-9a-f]{64}\n$/)
  })

  it('refuses an --ip that is no address or block, or an IPv4-mapped one (exit 2)', async () => {
    for (const ip of ['203.0.113', '10.0.0.0/33', '::ffff:10.0.0.1', 'example.com']) {
      const { code, err } = await sign(['--uid', 'u1', '--path', '/a.ts', '--secret', 's', '--ip', ip])
      assert.equal(code, 2, ip)
      assert.match(err, /--ip/)
    }
  })
})
