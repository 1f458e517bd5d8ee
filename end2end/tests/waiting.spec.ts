// "Why is my build waiting?": a ticket taken over XML-RPC appears in the status page's queue
// with the engine's reason, without a reload; the search finds it by project, with and
// without JavaScript.
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { call, intParam, takeTicket } from '../rpc';

const SANDBOX = '@e2e/why-waiting--tester';

test.describe('a waiting build', () => {
  let ticket = 0;

  test.afterAll(async () => {
    if (ticket) await call('closeTicket', intParam(ticket));
  });

  test('appears in the queue with its reason while the page is open', async ({ page }) => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const stream = page.waitForRequest((r) => r.url().includes('/events/status'));
    await page.goto('/');
    await expect(page.getByTestId('live-toggle')).toBeEnabled();
    // The queue is kept current by the page's one live stream, not by reloading.
    await stream;

    // No pool offers s390x here: the reason names the tag.
    ticket = await takeTicket(['copr_builder', 'arch_s390x'], SANDBOX);
    const reason = page
      .getByTestId('queue-table')
      .locator('[data-code="no_pool_offers_tag"]', { hasText: 'arch_s390x' });
    await expect(reason).toBeVisible({ timeout: 15_000 });
    await expect(reason).toContainText('No pool offers the tag `arch_s390x`');

    // Searching by project answers in place once hydrated, with the same reason.
    await page.getByLabel('Copr owner, project, owner/project or ticket id').fill('e2e/why-waiting');
    await page.getByRole('button', { name: 'Find' }).click();
    const found = page.getByTestId('found-tickets');
    await expect(found).toContainText(SANDBOX);
    await expect(found.locator('[data-code="no_pool_offers_tag"]')).toBeVisible();
    const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
    expect(results.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
    expect(errors).toEqual([]);
  });

  test.describe('without JavaScript', () => {
    test.use({ javaScriptEnabled: false });

    test('the search works from the server alone, and says when nothing matches', async ({ page }) => {
      await page.goto('/');
      await page.getByLabel('Copr owner, project, owner/project or ticket id').fill('why-waiting');
      await page.getByRole('button', { name: 'Find' }).click();
      await expect(page).toHaveURL(/\?q=why-waiting/);
      await expect(page.getByTestId('found-tickets')).toContainText(SANDBOX);
      await expect(page.getByLabel('Copr owner, project, owner/project or ticket id')).toHaveValue('why-waiting');

      await page.goto('/?q=nobody-builds-this');
      await expect(page.getByTestId('found-none')).toContainText('nobody-builds-this');
    });
  });
});
