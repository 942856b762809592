// The sign-in page: a token from `fedhpc admin dashboard-token` arrives in the URL's fragment
// (#token=…, never sent to a server or logged) or is pasted, and is exchanged once for an HttpOnly
// session cookie. Then the dashboard opens.

const form = /** @type {HTMLFormElement} */ (document.getElementById('login'));
const input = /** @type {HTMLInputElement} */ (document.getElementById('token'));
const message = /** @type {HTMLElement} */ (document.getElementById('message'));

/** @param {string} token */
async function exchange(token) {
  message.textContent = 'signing in…';
  const res = await fetch('/api/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: token.trim() }), credentials: 'same-origin' });
  if (res.ok) {
    location.replace('/');
    return;
  }
  const body = /** @type {{ error?: string, message?: string }} */ (await res.json().catch(() => ({})));
  message.textContent = `refused: ${body.error ?? res.status}: ${body.message ?? ''}`;
  message.className = 'error';
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  void exchange(input.value);
});

const fromUrl = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromUrl) {
  // The token leaves the address bar and the history at once.
  history.replaceState(null, '', '/login');
  void exchange(fromUrl);
}
