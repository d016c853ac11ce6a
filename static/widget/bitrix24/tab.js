// Bitrix24 shell: the CRM_DEAL_DETAIL_TAB placement page (rendered by our server after it verified the
// placement) carries
//   <div id="clinicbridge-panel" data-shell="bitrix24" data-api-base="<base>/api/v1" data-deal-id="<ID>"
//        data-session-token="<token>" data-locale="ru|en"></div>
// and BX24.js. This module mounts the common panel there; every API call carries the server-issued
// session token as a bearer credential, so portal and user come from the server's verification.
// The panel is imported dynamically so that the first API calls and the whole module graph start
// together (see preload); keep MODULES in step with PANEL_MODULES in common/panel.js (a test checks it).
const COMMON = new URL('../common/', import.meta.url);
export const MODULES = ['panel.js', 'core.js', 'forms.js', 'sections/account.js'];

function preload(locale) {
  const css = document.createElement('link');
  css.rel = 'stylesheet';
  css.href = new URL('panel.css', COMMON).href;
  document.head.append(css);
  for (const name of MODULES) {
    const link = document.createElement('link');
    link.rel = 'modulepreload';
    link.href = new URL(name, COMMON).href;
    document.head.append(link);
  }
}

function transportFor(apiBase, token) {
  // The panel asks for /api/v1/… paths; data-api-base already ends in /api/v1.
  const origin = apiBase.replace(/\/api\/v1\/?$/, '');
  return {
    async request({ method = 'GET', path, body, headers = {}, responseType }) {
      let response;
      try {
        response = await fetch(origin + path, {
          method,
          headers: {
            Accept: 'application/json',
            Authorization: `Bearer ${token}`,
            ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
            ...headers,
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          cache: 'no-store',
          credentials: 'omit',
        });
      } catch {
        throw { status: 0, data: null };
      }
      if (!response.ok) {
        let data = null;
        try { data = await response.json(); } catch { data = null; }
        throw { status: response.status, data };
      }
      const data = responseType === 'blob' ? await response.blob() : await response.json();
      return { status: response.status, data };
    },
  };
}

export function start(root = document.getElementById('clinicbridge-panel'), bx24 = globalThis.BX24) {
  if (!root) return Promise.resolve(null);
  // data-view="settings" on the app's main page (DEFAULT placement) mounts the admins' settings screen.
  const { apiBase, dealId, sessionToken, locale, view } = root.dataset;
  let pending = false;
  const fit = () => {
    // Coalesce bursts of resize notifications into one fitWindow per frame.
    if (!bx24 || pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; bx24.fitWindow(); });
  };
  const transport = transportFor(apiBase, sessionToken);
  const settingsView = view === 'settings';
  // Neither the modules nor the first API calls need BX24: they start before BX24.init's handshake, the
  // API calls first so they get one of the browser's six connections before the module files do.
  const lang = locale === 'en' ? 'en' : 'ru';
  const early = settingsView ? {} : {
    session: transport.request({ method: 'GET', path: '/api/v1/widget/session' }),
    stay: dealId
      ? transport.request({ method: 'GET', path: `/api/v1/deals/${encodeURIComponent(dealId)}/stay` })
      : null,
  };
  early.texts = fetch(new URL(`i18n/${lang}.json`, COMMON)).then((r) => (r.ok ? r.json() : Promise.reject(r.status)));
  // Nobody listens yet: the panel reads a failure when it adopts the promise.
  for (const request of Object.values(early)) request?.catch(() => {});
  preload(lang);
  const panel = import(new URL('panel.js', COMMON).href);
  const mount = () => panel.then((module) => (settingsView ? module.mountSettings : module.mountPanel)(root, {
    transport,
    early,
    dealId: dealId || null,
    locale: lang,
    shell: 'bitrix24',
    onResize: fit,
  }));
  if (!bx24) return mount(); // opened outside a Bitrix24 frame (demo, direct link)
  return new Promise((resolve, reject) => bx24.init(() => mount().then(resolve, reject)));
}

export const ready = start();
