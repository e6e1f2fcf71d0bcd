// Playwright configuration for confab's browser tests. The tests start the
// real bin/confab (built by `make e2e`) and drive Debian's Chromium with fake
// camera and microphone devices; no browser is downloaded.
const { defineConfig } = require('@playwright/test');
const os = require('node:os');
const path = require('node:path');

// Server processes started by the tests (lib/procs.js) leave a pid file in
// this directory (created on first use) while they run; the global teardown
// kills whatever a dead worker left behind and removes the directory. The
// config is evaluated first in the runner, whose environment the workers
// inherit, so they all share the runner's directory.
if (!process.env.E2E_PID_DIR) {
  process.env.E2E_PID_DIR = path.join(os.tmpdir(), `confab-e2e-pids-${process.pid}-${Date.now()}`);
}

module.exports = defineConfig({
  testDir: 'tests',
  globalTeardown: require.resolve('./lib/global-teardown'),
  // One browser at a time: WebRTC in several contexts is heavy on a 2-core box.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 20_000 },
  reporter: 'list',
  use: {
    browserName: 'chromium',
    permissions: ['camera', 'microphone'],
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
        '--allow-loopback-in-peer-connection',
      ],
    },
  },
});
