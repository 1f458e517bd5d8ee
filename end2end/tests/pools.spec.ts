// A pool's page: reached from the status page, complete without JavaScript, and accessible
// once hydrated, where its machines appear without a reload.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { BIN, FLOW, STATE, flowEnv } from '../playwright.config';

// The flow's app: the main one stays without pools for the status page's empty state.
test.use({ baseURL: FLOW });

test.beforeAll(() => {
  const file = `${STATE}/flow/pools-page.yaml`;
  writeFileSync(
    file,
    `e2e_page:
  max: 1
  max_prealloc: 1
  tags: [copr_builder, arch_ppc64le]
  cmd_new: echo 127.0.0.9
  cmd_delete: "true"
  description: "A pool to look at."
`,
  );
  execFileSync(BIN, ['pools', 'import', file], { env: { ...process.env, ...flowEnv }, stdio: 'pipe' });
});

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  test('the status page links to the pool page, which is complete from the server', async ({ page }) => {
    await page.goto('/');
    await page.getByRole('link', { name: 'e2e_page' }).click();
    await expect(page).toHaveURL('/pools/e2e_page');
    await expect(page).toHaveTitle(/Pool e2e_page/);
    await expect(page.getByRole('heading', { level: 1 })).toContainText('e2e_page');
    await expect(page.getByTestId('pool-facts')).toContainText('active');
    await expect(page.getByTestId('pool-config')).toContainText('max_prealloc: 1');
    // A visitor sees the machines but not their commands or addresses.
    await expect(page.getByTestId('pool-config')).toContainText('shown to the owning team and admins');
    await expect(page.getByRole('heading', { name: 'Waiting builds it could serve' })).toBeVisible();
  });

  test('the charts are drawn on the server and switch range by link', async ({ page }) => {
    await page.goto('/pools/e2e_page');
    // The engine samples at its first pass of each interval, and counted the machine's start.
    // The pool came from the command line: the page drawn before the engine's first pass over
    // it has no sample yet, and without JavaScript only a reload shows the next one.
    const machines = page.getByRole('img', { name: /Machines by state and waiting builds, last 24 hours/ });
    await expect(async () => {
      await page.reload();
      await expect(machines).toBeVisible({ timeout: 1_000 });
      await expect(page.getByRole('img', { name: /Start success, last 24 hours/ })).toBeVisible({ timeout: 1_000 });
    }).toPass({ timeout: 30_000 });
    await expect(page.getByRole('figure', { name: /Machines by state/ })).toContainText('Last sample:');
    await page.getByRole('link', { name: 'Last 90 days' }).click();
    await expect(page).toHaveURL('/pools/e2e_page?range=90d');
    await expect(page.getByRole('link', { name: 'Last 90 days' })).toHaveAttribute('aria-current', 'page');
    await expect(page.getByRole('figure', { name: /Machines by state and waiting builds, last 90 days/ })).toBeVisible();
  });
});

test('hydrated, the machine appears without a reload and the page is accessible', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The page follows its live stream once hydrated.
  const stream = page.waitForRequest((r) => r.url().includes('/events/pools/e2e_page'));
  await page.goto('/pools/e2e_page');
  await stream;
  const machines = page.getByTestId('machine-table');
  await expect(machines).toContainText('UP', { timeout: 30_000 });
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  expect(results.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
  // The charts keep their accessible names after the stream has replaced them.
  await expect(page.getByRole('img', { name: /Machines by state and waiting builds/ })).toBeVisible();
  await page.setViewportSize({ width: 390, height: 844 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(width).toBeLessThanOrEqual(390);
  expect(errors).toEqual([]);
});
