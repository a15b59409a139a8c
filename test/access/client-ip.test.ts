import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError } from '../../src/errors.ts'
import { ClientIpResolver } from '../../src/server/access/client-ip.ts'
import { IpBlockList, normalizeIp } from '../../src/ip-address.ts'

describe('client ip: normalizeIp', () => {
  it('keeps IPv4 dotted decimal and unwraps IPv4-mapped IPv6', () => {
    assert.equal(normalizeIp('203.0.113.9'), '203.0.113.9')
    assert.equal(normalizeIp('::ffff:203.0.113.9'), '203.0.113.9')
    assert.equal(normalizeIp('::FFFF:203.0.113.9'), '203.0.113.9')
    assert.equal(normalizeIp('::ffff:cb00:7109'), '203.0.113.9')
    assert.equal(normalizeIp('0:0:0:0:0:ffff:203.0.113.9'), '203.0.113.9')
    assert.equal(normalizeIp('[::ffff:203.0.113.9]:443'), '203.0.113.9')
  })

  it('writes IPv6 in RFC 5952 form: lower case, no leading zeros, longest zero run compressed', () => {
    assert.equal(normalizeIp('2001:DB8::1'), '2001:db8::1')
    assert.equal(normalizeIp('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001:db8::1')
    assert.equal(normalizeIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1') // first of two equal runs
    assert.equal(normalizeIp('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1') // one zero group stays
    assert.equal(normalizeIp('2001:0:0:1:0:0:0:1'), '2001:0:0:1::1') // the longer run wins
    assert.equal(normalizeIp('0:0:0:0:0:0:0:0'), '::')
    assert.equal(normalizeIp('0:0:0:0:0:0:0:1'), '::1')
    assert.equal(normalizeIp('::ffff:0:203.0.113.9'), '::ffff:0:cb00:7109') // translated, not mapped
    assert.equal(normalizeIp('::203.0.113.9'), '::cb00:7109') // deprecated compatible form, not mapped
  })

  it('strips brackets, ports, zone ids and spaces', () => {
    assert.equal(normalizeIp('[2001:db8::1]:443'), '2001:db8::1')
    assert.equal(normalizeIp('[2001:DB8::1]'), '2001:db8::1')
    assert.equal(normalizeIp('203.0.113.9:5678'), '203.0.113.9')
    assert.equal(normalizeIp('  203.0.113.9 '), '203.0.113.9')
    assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1')
    assert.equal(normalizeIp('[fe80::1%25eth0]:8080'), 'fe80::1')
  })

  it('answers undefined for anything that is not an address', () => {
    for (const bad of ['', ' ', 'unknown', '_hidden', 'example.com', 'localhost', '1.2.3', '1.2.3.4.5', '01.2.3.4',
      '256.1.1.1', '0x7f.0.0.1', '1.2.3.4:', '1.2.3.4:port', '1.2.3.4:123456', '[2001:db8::1', '[2001:db8::1]x',
      '[2001:db8::1]:', '[1.2.3.4]:80x', '2001:db8::1::2', '1:2:3:4:5:6:7:8:9', '1.2.3.4%eth0', 'for=1.2.3.4', '"1.2.3.4"']) {
      assert.equal(normalizeIp(bad), undefined, bad)
    }
  })
})

describe('client ip: ClientIpResolver', () => {
  const proxies = new ClientIpResolver(['10.0.0.0/8', '192.0.2.1', '2001:db8:ffff::/48', '::1'])

  it('answers the socket peer when it is no trusted proxy, whatever X-Forwarded-For says', () => {
    assert.equal(proxies.resolve('203.0.113.9', '198.51.100.1'), '203.0.113.9')
    assert.equal(proxies.resolve('::ffff:203.0.113.9', '10.0.0.1'), '203.0.113.9')
    assert.equal(proxies.resolve('2001:DB8::9', undefined), '2001:db8::9')
    const none = new ClientIpResolver()
    assert.equal(none.size, 0)
    assert.equal(none.resolve('10.0.0.1', '198.51.100.1'), '10.0.0.1')
  })

  it('answers the entry a trusted peer appended', () => {
    assert.equal(proxies.resolve('10.1.2.3', '198.51.100.1'), '198.51.100.1')
    assert.equal(proxies.resolve('::ffff:10.1.2.3', '198.51.100.1'), '198.51.100.1')
    assert.equal(proxies.resolve('192.0.2.1', '2001:DB8:0:0::7'), '2001:db8::7')
    assert.equal(proxies.resolve('::1', '[2001:db8::7]:51234'), '2001:db8::7')
    assert.equal(proxies.resolve('2001:db8:ffff:1::1', '198.51.100.1:5678'), '198.51.100.1')
  })

  it('walks a chain of trusted proxies from the right to the first untrusted entry', () => {
    assert.equal(proxies.resolve('10.0.0.1', '198.51.100.1, 10.0.0.2, 192.0.2.1'), '198.51.100.1')
    assert.equal(proxies.resolve('10.0.0.1', '198.51.100.1,10.0.0.2,2001:db8:ffff::5'), '198.51.100.1')
  })

  it('ignores what the client wrote to the left of the first untrusted entry (spoofing)', () => {
    // The client sent `X-Forwarded-For: 1.1.1.1, 10.0.0.7`, hoping to be taken for 1.1.1.1
    // or for a trusted proxy; our proxy appended the address it really saw.
    assert.equal(proxies.resolve('10.0.0.1', '1.1.1.1, 10.0.0.7, 198.51.100.1'), '198.51.100.1')
    assert.equal(proxies.resolve('10.0.0.1', 'unknown, 1.1.1.1, 198.51.100.1, 10.0.0.2'), '198.51.100.1')
  })

  it('answers the left-most entry when every entry is a trusted proxy', () => {
    assert.equal(proxies.resolve('10.0.0.1', '10.0.0.3, 192.0.2.1, 10.0.0.2'), '10.0.0.3')
    assert.equal(proxies.resolve('10.0.0.1', '::1'), '::1')
  })

  it('stops at an entry that is no address and answers the nearest trusted hop', () => {
    assert.equal(proxies.resolve('10.0.0.1', '198.51.100.1, unknown, 10.0.0.2'), '10.0.0.2')
    assert.equal(proxies.resolve('10.0.0.1', '198.51.100.1, _hidden'), '10.0.0.1')
    assert.equal(proxies.resolve('10.0.0.1', '198.51.100.1, example.com, 10.0.0.2'), '10.0.0.2')
  })

  it('skips empty list elements and reads repeated headers in order', () => {
    assert.equal(proxies.resolve('10.0.0.1', ''), '10.0.0.1')
    assert.equal(proxies.resolve('10.0.0.1', ' , '), '10.0.0.1')
    assert.equal(proxies.resolve('10.0.0.1', '198.51.100.1,, 10.0.0.2 ,'), '198.51.100.1')
    assert.equal(proxies.resolve('10.0.0.1', ['1.1.1.1, 198.51.100.1', '10.0.0.2']), '198.51.100.1')
    assert.equal(proxies.resolve('10.0.0.1', []), '10.0.0.1')
  })

  it('accepts a comma-separated TRUSTED_PROXIES string, mapped blocks and host bits', () => {
    const r = new ClientIpResolver(' 10.0.0.0/8 , ,::ffff:172.16.0.0/108,2001:DB8::/32,192.0.2.77/24')
    assert.equal(r.size, 4)
    assert.equal(r.isTrusted('172.16.5.5'), true) // ::ffff:172.16.0.0/108 is 172.16.0.0/12
    assert.equal(r.isTrusted('172.32.0.1'), false)
    assert.equal(r.isTrusted('::ffff:10.9.9.9'), true)
    assert.equal(r.isTrusted('[2001:db8:1::1]:80'), true)
    assert.equal(r.isTrusted('192.0.2.1'), true)
    assert.equal(r.isTrusted('192.0.3.1'), false)
    assert.equal(r.isTrusted('unknown'), false)
    const all = new ClientIpResolver(['0.0.0.0/0', '::/0'])
    assert.equal(all.resolve('203.0.113.9', '198.51.100.1, 2001:db8::1'), '198.51.100.1')
  })

  it('refuses entries that are neither addresses nor CIDR blocks, naming the setting', () => {
    for (const bad of ['10.0.0.0/33', '2001:db8::/129', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/-1', '10.0.0.0/ 8',
      'proxy.internal', '10.0.0', '[::1]', '10.0.0.1:80', 'fe80::1%eth0', '10.0.0.0/08x']) {
      assert.throws(() => new ClientIpResolver([bad]), (err: unknown) => {
        assert.ok(err instanceof ConfigError)
        assert.equal(err.code, 'SM_ERR_CONFIG')
        assert.equal(err.setting, 'TRUSTED_PROXIES')
        return true
      }, bad)
    }
  })
})

describe('client ip: IpBlockList', () => {
  it('answers the same from its kept answers, past the number it keeps, per family', () => {
    const list = new IpBlockList(['10.0.0.0/8', '2001:db8::/32', '192.168.1.7'], (entry) => new Error(entry))
    const expect = (ip: string): boolean => ip.startsWith('10.') || ip.startsWith('2001:db8:') || ip === '192.168.1.7'
    const ips: string[] = []
    for (let i = 0; i < 5_000; i++) ips.push(`10.${i >> 8}.${i & 255}.1`, `11.${i >> 8}.${i & 255}.1`, `2001:db8::${i.toString(16)}`, `2001:db9::${i.toString(16)}`)
    ips.push('192.168.1.7', '192.168.1.8', '::ffff:10.0.0.1', 'not an address', '')
    for (let round = 0; round < 2; round++) {
      for (const ip of ips) assert.equal(list.has(ip), expect(ip), `${ip} (round ${round})`)
    }
    // An IPv4 address is never in an IPv6 block, nor the reverse (as nginx matches).
    assert.equal(IpBlockList.of([{ text: '::/0', address: '::', prefix: 0, type: 'ipv6', insideLoopback: false }]).has('10.0.0.1'), false)
  })

  it('an empty list holds nothing', () => {
    const empty = new IpBlockList([], (entry) => new Error(entry))
    for (const ip of ['127.0.0.1', '::1', '']) assert.equal(empty.has(ip), false)
  })
})
