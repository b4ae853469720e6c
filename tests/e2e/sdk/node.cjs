// Sends calls with @segment/analytics-node as an application would, then prints one JSON
// line: the HTTP statuses the SDK saw and any error it emitted.
// usage: node node.cjs '{"writeKey":..., "host":..., "calls":[{"method":"track", "args":{...}}]}'
const { Analytics } = require('@segment/analytics-node')

async function main() {
  const config = JSON.parse(process.argv[2])
  const analytics = new Analytics({ writeKey: config.writeKey, host: config.host, flushAt: 20, maxRetries: 2 })
  const statuses = []
  const errors = []
  analytics.on('http_response', (response) => statuses.push({ url: response.url, status: response.status }))
  analytics.on('error', (error) => errors.push(String(error.code || error.reason || error)))
  for (const call of config.calls) {
    analytics[call.method](call.args)
  }
  await analytics.closeAndFlush({ timeout: 30000 })
  process.stdout.write(JSON.stringify({ requests: statuses, errors }) + '\n')
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`)
  process.exit(1)
})
