// Signing in through a real OpenID provider's redirect flow, with the app on `localhost` and
// the provider on `127.0.0.1` (different sites, as in production).
import { test, expect, type Page } from '@playwright/test';
import { IDP, OIDC_APP } from '../playwright.config';

/** Signs in as `user` through the real flow: the app's /auth/login starts it (the attempt
 * lands in this browser's cookie jar), and the provider is told whom to sign in with a
 * login_hint, as its test setup signs that user in without a form. */
async function signInAs(page: Page, user: string, next: string) {
  const start = await page.request.get(`${OIDC_APP}/auth/login?next=${encodeURIComponent(next)}`, { maxRedirects: 0 });
  expect(start.status()).toBe(303);
  const authorize = new URL(start.headers()['location']);
  expect(authorize.origin).toBe(IDP);
  authorize.searchParams.set('login_hint', user);
  return page.goto(authorize.toString());
}

test('a team member signs in, sees their teams and the admin pages, and signs out', async ({ page }) => {
  // Asking for a page that needs a user goes to the provider and comes back to it (the
  // test provider signs in its first user, alice, when not told otherwise).
  await page.goto(`${OIDC_APP}/teams`);
  await expect(page).toHaveURL(`${OIDC_APP}/teams`);
  await expect(page.getByTestId('signed-in-as')).toContainText('Alice Liddell');
  await expect(page.getByTestId('team-list')).toContainText('team-a');
  await expect(page.getByTestId('team-list')).toContainText('app-admins');

  await page.getByRole('link', { name: 'Admin', exact: true }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Admin' })).toBeVisible();
  await expect(page.getByTestId('engine-facts')).toContainText('running on this replica');
  await expect(page.getByTestId('audit-table')).toContainText('user.sign_in');

  const me = await page.request.get(`${OIDC_APP}/api/v1/me`);
  expect(me.status()).toBe(200);
  expect((await me.json()).teams).toEqual(['app-admins', 'packager', 'team-a']);

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByTestId('sign-in')).toBeVisible();
  expect((await page.request.get(`${OIDC_APP}/api/v1/me`)).status()).toBe(401);
});

test('the sign-in link works once the page is hydrated', async ({ page }) => {
  await page.goto(`${OIDC_APP}/`);
  await expect(page.getByTestId('live-toggle')).toBeEnabled();
  // A hydrated page routes links itself; the sign-in link must still reach the server.
  await page.getByTestId('sign-in').click();
  await expect(page.getByTestId('signed-in-as')).toContainText('Alice Liddell');
  await expect(page).toHaveURL(`${OIDC_APP}/`);
});

test('someone outside the admin group is refused the admin page', async ({ page }) => {
  await signInAs(page, 'bob', '/admin');
  await expect(page).toHaveURL(`${OIDC_APP}/admin`);
  const response = await page.reload();
  expect(response?.status()).toBe(403);
  await expect(page.getByTestId('forbidden')).toContainText('Not allowed');
  await expect(page.getByRole('link', { name: 'Admin', exact: true })).toHaveCount(0);
  await expect(page.getByTestId('signed-in-as')).toContainText('Bob');
});

test('a refusal at the provider ends on a page that explains it', async ({ page }) => {
  await signInAs(page, 'mallory', '/');
  await expect(page.getByRole('heading', { name: 'Sign-in failed' })).toBeVisible();
  await expect(page.getByTestId('sign-in-error')).toContainText('unknown test user mallory');
  await expect(page.getByRole('link', { name: 'Try again' })).toBeVisible();
});
