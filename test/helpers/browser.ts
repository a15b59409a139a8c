/**
 * Debian's chromium driven by playwright-core for the dashboard tests
 * (a test tool's own browser download fails where the tests run).
 *
 * Without chromium the tests are skipped with a reason, except in CI
 * (`CI=true`), where a missing browser is a failure: `.ci/run` installs it.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { chromium } from 'playwright-core'
import type { Browser, BrowserContext, ConsoleMessage, Page, Request } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
export const SKIP_REASON = `${CHROMIUM} is missing (apt-get install chromium); set CI=true to make this a failure`
const CI_FAILURE = `${CHROMIUM} is missing and CI=true: the dashboard tests must run in CI (.ci/run installs Debian's chromium)`

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
  // The demo player starts on a click; no test should depend on autoplay heuristics.
  '--autoplay-policy=no-user-gesture-required'
]

/** Where tests write what a person may want to look at (git-ignored). */
export const TEST_OUTPUT = join(import.meta.dirname, '..', '..', 'test-output')

/** Options for a `describe` that needs chromium: `{ skip }` without it outside CI. */
export function browserSuite (): { skip?: string } {
  if (existsSync(CHROMIUM) || process.env.CI === 'true') return {}
  return { skip: SKIP_REASON }
}

/** One chromium per test file: launched on first use, closed with {@link closeBrowser}. */
let launched: Promise<Browser> | undefined

/**
 * The file's browser; throws in CI when chromium is missing. playwright
 * starts it with a fresh temporary profile (`--user-data-dir`) and removes
 * it on close: nothing is cached or remembered between runs.
 */
export async function browser (): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(CI_FAILURE)
  launched ??= chromium.launch({ executablePath: CHROMIUM, args: ARGS })
  return await launched
}

/** Close the file's browser (for `after`). */
export async function closeBrowser (): Promise<void> {
  if (launched === undefined) return
  const b = launched
  launched = undefined
  await (await b).close()
}

/** A page plus everything that went wrong on it. */
export interface WatchedPage {
  page: Page
  context: BrowserContext
  /** Console messages of type error, and uncaught page errors. */
  errors: string[]
  /** Requests that failed at the network level or got a 4xx/5xx answer. */
  failed: string[]
  /** Dialogs (alert, confirm, prompt) the page opened; each is dismissed. */
  dialogs: string[]
}

/**
 * A fresh context (its own cookies and cache) and page that record console
 * errors, page errors, failed requests and dialogs. Closed when the test ends.
 * @param credentials - HTTP Basic credentials the browser answers a challenge with
 */
export async function openPage (t: TestContext, credentials?: { username: string, password: string }): Promise<WatchedPage> {
  const context = await (await browser()).newContext({
    viewport: { width: 1280, height: 1000 },
    ...(credentials !== undefined ? { httpCredentials: credentials } : {})
  })
  t.after(() => context.close())
  const page = await context.newPage()
  const watched: WatchedPage = { page, context, errors: [], failed: [], dialogs: [] }
  page.on('console', (m: ConsoleMessage) => { if (m.type() === 'error') watched.errors.push(`${m.text()} @ ${m.location().url}`) })
  page.on('pageerror', (err) => watched.errors.push(`page error: ${err.message}`))
  page.on('requestfailed', (r: Request) => watched.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText ?? 'failed'}`))
  page.on('response', (r) => { if (r.status() >= 400) watched.failed.push(`${r.request().method()} ${r.url()}: ${r.status()}`) })
  page.on('dialog', (d) => {
    watched.dialogs.push(`${d.type()}: ${d.message()}`)
    d.dismiss().catch(() => {})
  })
  return watched
}

/** A folder under `test-output/` for this test's files. */
export function outputDir (name: string): string {
  const dir = join(TEST_OUTPUT, name)
  mkdirSync(dir, { recursive: true })
  return dir
}
