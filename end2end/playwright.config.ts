// Browser tests of copr-pools in Debian's Chromium (never a downloaded browser). Playwright
// starts the servers below on loopback and stops them by their PIDs when the run ends.
import { defineConfig } from '@playwright/test';

export const APP_PORT = 3310;
// Every port below 32768, out of Linux's ephemeral range, so that no outgoing connection
// of this machine holds one when a server starts.
export const APP_XMLRPC_PORT = 3311;
/** The app signing in with the test provider, reached as localhost while the provider is
 * 127.0.0.1: two sites, so a wrong SameSite setting would lose the session. */
export const OIDC_APP_PORT = 3320;
export const OIDC_APP = `http://localhost:${OIDC_APP_PORT}`;
/** A second app of its own for the whole request flow, which makes pools (the status tests
 * want an app without any). */
export const FLOW_PORT = 3330;
export const FLOW = `http://127.0.0.1:${FLOW_PORT}`;
export const FLOW_XMLRPC_PORT = 3331;
export const IDP_PORT = 3390;
export const IDP = `http://127.0.0.1:${IDP_PORT}`;
export const BIN = process.env.COPR_POOLS_BIN ?? '../target/debug/copr-pools';
export const STATE = '.state';

/** Environment of the app under test: a fresh SQLite database under .state/app. */
export const appEnv = {
  COPR_POOLS_DATABASE_URL: `sqlite://${STATE}/app/db.sqlite?mode=rwc`,
  COPR_POOLS_LISTEN: `127.0.0.1:${APP_PORT}`,
  COPR_POOLS_XMLRPC_LISTEN: `127.0.0.1:${APP_XMLRPC_PORT}`,
  COPR_POOLS_LOG_DIR: `${STATE}/app/logs`,
  COPR_POOLS_DATA_DIR: `${STATE}/app/data`,
  COPR_POOLS_SITE_ROOT: '../target/site',
  COPR_POOLS_ENGINE_PERIOD_SECS: '1',
  // Everything the server logs goes to a file the credential tests search for secrets.
  COPR_POOLS_LOG: 'debug',
  COPR_POOLS_DEV_LOGIN: 'true',
  COPR_POOLS_DEMO_SPAWNERS: 'true',
  COPR_POOLS_SPAWNERS_DIR: '../spawners',
};

/** Environment of the flow's app. */
export const flowEnv = {
  ...appEnv,
  COPR_POOLS_DATABASE_URL: `sqlite://${STATE}/flow/db.sqlite?mode=rwc`,
  COPR_POOLS_LISTEN: `127.0.0.1:${FLOW_PORT}`,
  COPR_POOLS_XMLRPC_LISTEN: `127.0.0.1:${FLOW_XMLRPC_PORT}`,
  COPR_POOLS_LOG_DIR: `${STATE}/flow/logs`,
  COPR_POOLS_DATA_DIR: `${STATE}/flow/data`,
  COPR_POOLS_LOG: 'warn',
};

/** The app's log file. */
export const APP_LOG = `${STATE}/app/server.log`;

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
      command: 'node idp/idp.mjs',
      url: `${IDP}/.well-known/openid-configuration`,
      env: {
        IDP_PORT: String(IDP_PORT),
        CLIENT_ID: 'copr-pools-e2e',
        CLIENT_SECRET: 'e2e-secret',
        REDIRECT_URIS: `${OIDC_APP}/auth/callback`,
      },
      reuseExistingServer: false,
      timeout: 30_000,
      stdout: 'ignore',
      stderr: 'ignore',
    },
    {
      command: `rm -rf ${STATE}/oidc && mkdir -p ${STATE}/oidc && exec ${BIN} serve`,
      url: `http://127.0.0.1:${OIDC_APP_PORT}/readyz`,
      env: {
        COPR_POOLS_DATABASE_URL: `sqlite://${STATE}/oidc/db.sqlite?mode=rwc`,
        COPR_POOLS_LISTEN: `127.0.0.1:${OIDC_APP_PORT}`,
        COPR_POOLS_XMLRPC_LISTEN: '127.0.0.1:3321',
        COPR_POOLS_LOG_DIR: `${STATE}/oidc/logs`,
        COPR_POOLS_DATA_DIR: `${STATE}/oidc/data`,
        COPR_POOLS_SITE_ROOT: '../target/site',
        COPR_POOLS_LOG: 'warn',
        COPR_POOLS_OIDC_ISSUER: IDP,
        COPR_POOLS_OIDC_CLIENT_ID: 'copr-pools-e2e',
        COPR_POOLS_OIDC_CLIENT_SECRET_FILE: 'idp/e2e-client-secret',
        COPR_POOLS_OIDC_REDIRECT_URL: `${OIDC_APP}/auth/callback`,
        COPR_POOLS_ADMIN_GROUPS: 'app-admins',
      },
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
    {
      command: `rm -rf ${STATE}/app && mkdir -p ${STATE}/app && exec ${BIN} serve 2>${STATE}/app/server.log`,
      url: `http://127.0.0.1:${APP_PORT}/readyz`,
      env: appEnv,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'ignore',
    },
    {
      command: `rm -rf ${STATE}/flow && mkdir -p ${STATE}/flow && exec ${BIN} serve`,
      url: `${FLOW}/readyz`,
      env: flowEnv,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
  ],
});
