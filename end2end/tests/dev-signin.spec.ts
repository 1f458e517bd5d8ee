// The development sign-in (on loopback only), as the embedded demo uses it: an anonymous
// visitor's form token is a cookie, no session is stored until someone signs in.
import { test, expect, type Page } from '@playwright/test';

async function cookieNames(page: Page) {
  return (await page.context().cookies()).map((c) => c.name).sort();
}

for (const javaScriptEnabled of [false, true]) {
  test.describe(javaScriptEnabled ? 'hydrated' : 'without JavaScript', () => {
    test.use({ javaScriptEnabled });

    test('a visitor signs in with the development sign-in and out again', async ({ page }) => {
      await page.goto('/');
      await expect(page.getByTestId('dev-banner')).toBeVisible();
      await page.goto('/auth/dev?next=/teams');
      // Looking costs nothing: a form cookie, no session.
      expect(await cookieNames(page)).toEqual(['__Host-copr_pools_form']);

      await page.getByLabel('Username').fill('dora');
      await page.getByLabel('Groups').fill('team-dora, packager');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await expect(page).toHaveURL(/\/teams$/);
      await expect(page.getByTestId('team-list')).toContainText('team-dora');
      expect(await cookieNames(page)).toEqual(['__Host-copr_pools_form', 'copr_pools_session']);

      await page.getByRole('button', { name: 'Sign out' }).click();
      await expect(page.getByTestId('sign-in')).toBeVisible();
      expect((await page.request.get('/api/v1/me')).status()).toBe(401);
    });
  });
}
