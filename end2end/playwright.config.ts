import { defineConfig } from '@playwright/test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// One real server and one real tansu broker for the whole run, on ports
// that can be overridden; a fresh data directory each run.
const root = path.resolve(__dirname, '..');
const port = Number(process.env.E2E_PORT ?? 3917);
const kafkaPort = Number(process.env.E2E_KAFKA_PORT ?? 19192);
// An SQS-compatible server (moto), installed by scripts/setup.sh.
const motoPort = Number(process.env.E2E_MOTO_PORT ?? 19193);
const motoServer =
  process.env.EVENTFLOWS_MOTO_SERVER ?? path.join(os.homedir(), '.local/share/eventflows/moto/bin/moto_server');
const binary = process.env.EVENTFLOWS_E2E_BINARY ?? path.join(root, 'target/debug/eventflows');
const dataDir =
  process.env.E2E_DATA_DIR ??
  (process.env.E2E_DATA_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'eventflows-e2e-')));

export const kafkaBootstrap = `127.0.0.1:${kafkaPort}`;

export default defineConfig({
  testDir: './tests',
  outputDir: './test-results',
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  forbidOnly: !!process.env.CI,
  reporter: process.env.CI ? [['list']] : [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
        '--disable-sync',
      ],
    },
  },
  webServer: [
    {
      command: `tansu broker --listener-url tcp://127.0.0.1:${kafkaPort} --advertised-listener-url tcp://127.0.0.1:${kafkaPort} --storage-engine memory://tansu/`,
      port: kafkaPort,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
    {
      command: `"${motoServer}" -H 127.0.0.1 -p ${motoPort}`,
      port: motoPort,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'ignore',
    },
    {
      command: `"${binary}" demo && exec "${binary}" serve`,
      url: `http://127.0.0.1:${port}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
      env: {
        EVENTFLOWS_LISTEN: `127.0.0.1:${port}`,
        EVENTFLOWS_DATA_DIR: dataDir,
        EVENTFLOWS_DIST_DIR: path.join(root, 'dist'),
        RUST_LOG: 'warn',
      },
    },
  ],
});
