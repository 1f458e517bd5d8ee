// The public status page, read twice: by a browser without JavaScript (server rendering
// alone) and hydrated (the WebAssembly attached and live).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { test, expect, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { BIN, STATE, appEnv } from '../playwright.config';

function importPools(yaml: string) {
  const file = `${STATE}/app/pools.yaml`;
  writeFileSync(file, yaml);
  execFileSync(BIN, ['pools', 'import', file], { env: { ...process.env, ...appEnv } });
}

async function expectAccessible(page: Page) {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  expect(results.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
}

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  test('the status page is complete from the server alone', async ({ page }) => {
    const response = await page.goto('/');
    expect(response?.status()).toBe(200);
    await expect(page).toHaveTitle('Builder pools · copr-pools');
    await expect(page.getByRole('heading', { level: 1, name: 'Builder pools' })).toBeVisible();
    await expect(page.getByRole('navigation', { name: 'Main' })).toBeVisible();
    await expect(page.getByRole('main')).toBeVisible();
    await expect(page.getByRole('contentinfo')).toContainText('copr-pools');
    // No pools yet: the empty state explains what a pool is and how a team gets one.
    await expect(page.getByTestId('no-pools')).toContainText('A team gets a pool');
    await expect(page.getByTestId('queue-empty')).toBeVisible();
    // Nothing hydrated it, so the live toggle stays inert.
    await expect(page.getByTestId('live-toggle')).toBeDisabled();
  });

  test('unknown addresses get a 404 page with a way back', async ({ page }) => {
    const response = await page.goto('/nope');
    expect(response?.status()).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
    await page.getByRole('link', { name: 'Go to the pool status' }).click();
    await expect(page).toHaveURL('/');
  });
});

test.describe('hydrated', () => {
  test('live updates can be paused once hydrated, and new pools appear without a reload', async ({ page }) => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto('/');
    const toggle = page.getByTestId('live-toggle');
    // Enabled only by the WebAssembly: proof that hydration ran.
    await expect(toggle).toBeEnabled();
    await expect(toggle).toHaveText('Live updates on');
    // Landmarks, labels and contrast, on the empty state (axe needs JavaScript in the page).
    await expect(page.getByTestId('no-pools')).toBeVisible();
    await expectAccessible(page);
    await toggle.click();
    await expect(toggle).toHaveText('Live updates paused');
    await expect(toggle).toHaveAttribute('aria-pressed', 'false');
    await toggle.click();
    await expect(toggle).toHaveText('Live updates on');

    importPools(`e2e_local:
  max: 3
  max_prealloc: 2
  max_starting: 2
  tags: [copr_builder, arch_x86_64]
  cmd_new: echo 127.0.0.1
  cmd_delete: "true"
  description: "A pool created while the page was open."
`);
    const table = page.getByTestId('pool-table');
    await expect(table).toContainText('e2e_local');
    // The engine starts two machines; the numbers follow without a reload.
    await expect(table.locator('tbody td[data-label="Ready"]')).toHaveText('2', { timeout: 30_000 });
    expect(errors).toEqual([]);
    await expectAccessible(page);
  });

  test('the page reads well on a phone', async ({ page }) => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto('/');
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(width).toBeLessThanOrEqual(390);
    await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
  });
});
