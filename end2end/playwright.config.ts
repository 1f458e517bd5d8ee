// Browser tests of copr-pools in Debian's Chromium (never a downloaded browser). Playwright
// starts the servers below on loopback and stops them by their PIDs when the run ends.
import { defineConfig } from '@playwright/test';

export const APP_PORT = 3310;
export const APP_XMLRPC_PORT = 49310;
export const BIN = process.env.COPR_POOLS_BIN ?? '../target/debug/copr-pools';
export const STATE = '.state';

/** Environment of the app under test: a fresh SQLite database under .state/app. */
export const appEnv = {
  COPR_POOLS_DATABASE_URL: `sqlite://${STATE}/app/db.sqlite?mode=rwc`,
  COPR_POOLS_LISTEN: `127.0.0.1:${APP_PORT}`,
  COPR_POOLS_XMLRPC_LISTEN: `127.0.0.1:${APP_XMLRPC_PORT}`,
  COPR_POOLS_LOG_DIR: `${STATE}/app/logs`,
  COPR_POOLS_SITE_ROOT: '../target/site',
  COPR_POOLS_ENGINE_PERIOD_SECS: '1',
  COPR_POOLS_LOG: 'warn',
};

const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${APP_PORT}`,
    launchOptions: { executablePath: '/usr/bin/chromium', args: chromiumArgs },
    trace: 'off',
  },
  webServer: [
    {
      command: `rm -rf ${STATE}/app && mkdir -p ${STATE}/app && exec ${BIN} serve`,
      url: `http://127.0.0.1:${APP_PORT}/readyz`,
      env: appEnv,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
  ],
});
