import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { writeNginxConfig } from '../../src/server/nginx/nginx-config.ts'
import { nginxOrSkip } from '../helpers/own-nginx.ts'

const NGINX = process.env.NGINX_BIN ?? 'nginx'

// With ORIGIN_URL, the rendered configuration named 499 (nginx's code for a
// client that left) among the origin failures of `error_page`, which nginx
// refuses ("invalid value"): `nginx -t` failed and the nginx engine did not
// start at all with an HTTP origin.
test('the nginx engine configuration with an HTTP origin passes nginx -t', (t) => {
  if (!nginxOrSkip(t)) return
  const dir = mkdtempSync(join(tmpdir(), 'sm-nginx-http-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const conf = writeNginxConfig({
    host: '127.0.0.1',
    port: 1,
    root: dir,
    httpOrigin: { url: 'http://127.0.0.1:2/media/?k=v', timeout: 10, connections: 64, trustedProxies: ['10.0.0.0/8'] },
    signingSecret: 'secret',
    dir,
    accessLog: join(dir, 'access.log'),
    njsPath: new URL('../../nginx/streammeter.js', import.meta.url).pathname,
    user: process.getuid?.() === 0 ? 'root' : undefined
  })
  const run = spawnSync(NGINX, ['-t', '-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
})
