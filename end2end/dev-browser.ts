// What the browser tests share: signing in with the development sign-in, and a page in a
// fresh browser context (its own cookies) with JavaScript on or off.
import { expect, type Browser, type Page } from '@playwright/test';

export async function signIn(page: Page, user: string, groups: string) {
  await page.goto('/auth/dev');
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Groups').fill(groups);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('signed-in-as')).toContainText(user);
}

export async function newPage(browser: Browser, javaScriptEnabled: boolean, baseURL: string) {
  const context = await browser.newContext({ javaScriptEnabled, baseURL });
  return context.newPage();
}
