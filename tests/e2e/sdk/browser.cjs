// Drives @segment/analytics-next in headless Chromium (puppeteer-core): opens the page the
// test serves on 127.0.0.1, waits until the page script sets window.__result, prints one
// JSON line. Any request to a host other than 127.0.0.1 is aborted and reported, so the
// test proves the SDK fetched nothing from outside (settings are given inline).
// Then it waits (30 s at most) until the page has had EXPECTED answers to POSTs to the
// collector: in batching mode the SDK sends after the calls have returned.
// usage: node browser.cjs PAGE_URL CHROMIUM_PATH COLLECTOR_URL EXPECTED  (NODE_PATH: .local/ npm tools)
const puppeteer = require('puppeteer-core')

async function main() {
  const [url, chromium, collector, expected] = process.argv.slice(2)
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  })
  const outside = []
  const responses = []
  try {
    const page = await browser.newPage()
    await page.setRequestInterception(true)
    page.on('request', (request) => {
      if (new URL(request.url()).hostname !== '127.0.0.1') {
        outside.push(request.url())
        request.abort()
      } else {
        request.continue()
      }
    })
    page.on('response', (response) => {
      responses.push({ method: response.request().method(), url: response.url(), status: response.status() })
    })
    page.on('console', (message) => process.stderr.write(`[page] ${message.text()}\n`))
    page.on('pageerror', (error) => process.stderr.write(`[page error] ${error}\n`))
    await page.goto(url)
    const handle = await page.waitForFunction(() => window.__result, { timeout: 60000, polling: 200 })
    const result = await handle.jsonValue()
    const posts = () => responses.filter((r) => r.method === 'POST' && r.url.startsWith(collector))
    for (let waited = 0; posts().length < Number(expected) && waited < 30000; waited += 200) {
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    process.stdout.write(JSON.stringify({ result, outside, responses }) + '\n')
  } finally {
    await browser.close()
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`)
  process.exit(1)
})
