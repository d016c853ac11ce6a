// Shared helpers of the panel: DOM building without innerHTML, texts, formatting, and the API wrapper
// that turns every transport outcome into {ok, status, data} or a worded error with a retry.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function makeTexts(dictionary) {
  const t = (key, params) => {
    let text = dictionary[key] ?? key;
    for (const [name, value] of Object.entries(params || {})) text = text.replaceAll(`{${name}}`, value);
    return text;
  };
  // The server words its refusals in English; the i18n file's "reasons" ([pattern, text with {1}…]) put
  // the known ones in the user's language, and an unknown one is shown as sent rather than hidden.
  const reasons = (dictionary.reasons || []).map(([pattern, text]) => [new RegExp(pattern), text]);
  t.reason = (sent) => {
    for (const [pattern, text] of reasons) {
      const match = pattern.exec(sent);
      if (match) return text.replace(/\{(\d)\}/g, (_, n) => match[Number(n)] ?? '');
    }
    return sent;
  };
  return t;
}

// crypto.randomUUID needs a secure context; amo and B24 pages are https, the demo is localhost, and the
// fallback keeps a plain-http intranet install working too.
export function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function makeFormat(uiLocale, portal) {
  const moneyLocale = (portal?.locale || 'ru_RU').replace('_', '-');
  const currency = portal?.currency || 'RUB';
  const money = new Intl.NumberFormat(moneyLocale, { style: 'currency', currency });
  const day = new Intl.DateTimeFormat(uiLocale === 'en' ? 'en-GB' : 'ru-RU', {
    day: '2-digit', month: '2-digit', year: 'numeric', timeZone: 'UTC',
  });
  const moment = new Intl.DateTimeFormat(uiLocale === 'en' ? 'en-GB' : 'ru-RU', {
    day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit',
    timeZone: portal?.timezone || 'Europe/Moscow',
  });
  return {
    currency,
    // Intl formats a decimal string exactly (no float rounding of kopecks).
    money: (amount) => (amount == null ? '' : money.format(String(amount))),
    // Dates from the API are already days of the portal's calendar: format them as such, in UTC.
    date: (iso) => {
      if (!iso) return '';
      const [y, m, d] = iso.slice(0, 10).split('-').map(Number);
      return day.format(new Date(Date.UTC(y, m - 1, d)));
    },
    moment: (iso) => (iso ? moment.format(new Date(iso)) : ''),
  };
}

export function addDays(iso, days) {
  const [y, m, d] = iso.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

export function isoToday(timezone) {
  // en-CA formats as YYYY-MM-DD.
  return new Intl.DateTimeFormat('en-CA', { timeZone: timezone || 'Europe/Moscow' }).format(new Date());
}

export class ApiFailure extends Error {
  constructor(status, data, network) {
    super((data && data.error && data.error.message) || `HTTP ${status}`);
    this.status = status;
    this.data = data;
    this.network = network;
    this.fields = (data && data.error && data.error.fields) || {};
    this.code = data && data.error && data.error.code;
  }
}

// transport.request({method, path, body, headers, responseType}) resolves {status, data} for 2xx and
// rejects {status, data} otherwise, status 0 when the server could not be reached.
export function makeApi(transport) {
  async function settle(request) {
    try {
      const result = await request;
      return result.data;
    } catch (failure) {
      const status = failure && typeof failure.status === 'number' ? failure.status : 0;
      throw new ApiFailure(status, failure && failure.data, status === 0 || status >= 500);
    }
  }
  const call = (method, path, options = {}) => settle(transport.request({ method, path, ...options }));
  return {
    // A request the shell started itself before the panel's modules arrived (options.early).
    adopt: settle,
    get: (path, options) => call('GET', path, options),
    post: (path, body, key) => call('POST', path, { body, headers: key ? { 'Idempotency-Key': key } : {} }),
    put: (path, body, key) => call('PUT', path, { body, headers: key ? { 'Idempotency-Key': key } : {} }),
    blob: (path) => call('GET', path, { responseType: 'blob' }),
  };
}

export function errorText(t, failure) {
  if (!(failure instanceof ApiFailure)) return t('error_unexpected');
  if (failure.status === 0) return t('error_network');
  if (failure.status >= 500) return t('error_server');
  if (failure.status === 401) return t('signed_out');
  if (failure.status === 403) return t('no_role');
  if (failure.status === 429) return t('error_busy');
  const reasons = Object.values(failure.fields || {}).flat();
  return reasons.length ? reasons.map((r) => t.reason(r)).join('; ') : failure.message;
}

// A worded failure with a retry button: never a silent one.
export function failureBox(t, failure, retry) {
  return h('div', { class: 'cbp-failure', role: 'alert' },
    h('p', { class: 'cbp-error' }, errorText(t, failure)),
    retry ? h('button', { type: 'button', class: 'cbp-btn cbp-retry', onclick: retry }, t('retry')) : null);
}

export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

