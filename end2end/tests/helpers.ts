import { expect, type Page } from '@playwright/test';

/** The demo logins (`eventflows demo`). */
export const users = {
  admin: { name: 'admin', password: 'admin-password' },
  ana: { name: 'ana', password: 'ana-password' },
  ben: { name: 'ben', password: 'ben-password' },
} as const;

/** Logs in through the login form and waits for the app shell. */
export async function logIn(page: Page, user: { name: string; password: string }) {
  await page.goto('/login');
  await page.getByLabel('Username').fill(user.name);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('button', { name: 'Log out' })).toBeVisible();
  await expect(page.getByTestId('current-user')).toHaveText(user.name);
}
