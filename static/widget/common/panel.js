// The deal-card panel shared by the amoCRM and Bitrix24 shells. A shell calls
//   mountPanel(root, {transport, dealId, locale: 'ru'|'en', onResize})
// where `transport.request({method, path, body, headers, responseType})` reaches our /api/v1 with the
// CRM's proof attached (amo: $authorizedAjax + X-Auth-Token; Bitrix24: fetch + bearer session token).
// Portal, user and roles come from GET /api/v1/widget/session, never from the shell or local state.
// A shell may start GET widget/session, GET deals/{id}/stay and the i18n file before importing this
// module, pass the promises as options.early = {session, stay, texts} and preload PANEL_MODULES: the API
// then answers while the modules load.
// Sections are modules ({id, title(t), visible(session), render(ctx)}) listed in SECTIONS; another one
// can be added at run time with registerSection().
import { errorText, failureBox, h, makeApi, makeFormat, makeTexts } from './core.js';
import './forms.js'; // fetched in the first wave with the sections instead of one round trip later
import { accountSection, openForm, summarySkeleton } from './sections/account.js';

// What the first render needs (the static import graph): shells preload exactly these.
export const PANEL_MODULES = ['panel.js', 'core.js', 'forms.js', 'sections/account.js'];

// The other sections load when their tab is first opened (and in the background after the first render),
// so the first render fetches only what it shows.
function lazy(id, titleKey, visible, module, name) {
  return { id, title: (t) => t(titleKey), visible, load: () => import(module).then((m) => m[name]) };
}

export const SECTIONS = [
  accountSection,
  lazy('statement', 'tab_statement', (s) => s.features.money, './sections/statement.js', 'statementSection'),
  lazy('forecast', 'tab_forecast', (s) => s.features.stay, './sections/forecast.js', 'forecastSection'),
  lazy('invoices', 'tab_invoices', (s) => s.features.stay, './sections/invoices.js', 'invoicesSection'),
  lazy('operators', 'tab_operators', (s) => s.features.stay, './sections/operators.js', 'operatorsSection'),
  lazy('inpatient', 'tab_inpatient', (s) => s.features.stay, './sections/inpatient.js', 'inpatientSection'),
  lazy('settings', 'tab_settings', (s) => s.features.settings, './sections/settings.js', 'settingsSection'),
  lazy('log', 'tab_log', (s) => s.features.settings, './sections/settings.js', 'logSection'),
];

export function registerSection(section, position = SECTIONS.length) {
  if (!SECTIONS.some((s) => s.id === section.id)) SECTIONS.splice(position, 0, section);
}

const texts = {};

function loadTexts(locale) {
  texts[locale] = texts[locale] || fetch(new URL(`./i18n/${locale}.json`, import.meta.url)).then((r) => {
    if (!r.ok) throw new Error(`i18n ${locale}: HTTP ${r.status}`);
    return r.json();
  });
  return texts[locale];
}

function addStyles(doc) {
  const href = new URL('./panel.css', import.meta.url).href;
  if (![...doc.querySelectorAll('link[rel=stylesheet]')].some((l) => l.href === href)) {
    doc.head.append(h('link', { rel: 'stylesheet', href }));
  }
}

export async function mountPanel(root, options) {
  const locale = options.locale === 'en' ? 'en' : 'ru';
  addStyles(root.ownerDocument);
  const api = makeApi(options.transport);
  const onResize = options.onResize || (() => {});
  const only = options.sections || null;
  // The texts, the session and the stay are asked for at once: the first render waits for the slowest
  // of them, not for their sum. A settled promise keeps a failure for load() to word.
  const settle = (promise) => promise.then((value) => ({ value }), (failure) => ({ failure }));
  const stayPath = () => `/api/v1/deals/${encodeURIComponent(options.dealId)}/stay`;
  const early = options.early || {};
  const wantStay = options.dealId && !(only && !only.includes('account'));
  const prefetched = {
    session: settle(early.session ? api.adopt(early.session) : api.get('/api/v1/widget/session')),
    stay: wantStay ? settle(early.stay ? api.adopt(early.stay) : api.get(stayPath())) : null,
  };
  let dictionary;
  try {
    dictionary = await (early.texts || loadTexts(locale));
  } catch {
    try {
      dictionary = await loadTexts(locale);
    } catch {
      dictionary = {};
    }
  }
  const t = makeTexts(dictionary);
  const shell = h('div', { class: 'cbp', lang: locale, dataset: { shell: options.shell || '' } });
  const toast = h('div', { class: 'cbp-toast', role: 'status', 'aria-live': 'polite' });
  const main = h('div', { class: 'cbp-main' }, summarySkeleton(t));
  // What an admin must act on (lost CRM access, a block, refused webhooks, failed CRM jobs): above
  // everything, so "reconnect" is the first thing seen, not a silent failure later.
  const attention = h('div', { class: 'cbp-attention', role: 'alert', hidden: true });
  shell.append(attention, main, toast);
  root.replaceChildren(shell);
  const resizeObserver = typeof ResizeObserver === 'function' ? new ResizeObserver(() => onResize()) : null;
  resizeObserver?.observe(shell);

  // options.sections limits the panel to some sections: the CRM's settings area mounts ['settings', 'log'].
  const ctx = {
    t, api, dealId: options.dealId, cache: {}, stay: null, session: null, current: only ? only[0] : 'account',
    resized: () => onResize(),
    errorText: (failure) => errorText(t, failure),
    failureBox: (failure, retry) => failureBox(t, failure, retry),
    toast(message, isError) {
      toast.textContent = message || '';
      toast.classList.toggle('cbp-toast-error', !!isError);
    },
    setStay(stay, message) {
      ctx.stay = stay;
      ctx.toast(message);
      draw();
    },
    focusActions() {
      shell.querySelector('.cbp-action, .cbp-tab[aria-selected=true]')?.focus();
    },
  };

  function notice(message, extra) {
    main.replaceChildren(h('div', { class: 'cbp-notice' }, h('p', { class: 'cbp-muted' }, message), extra || null));
    onResize();
  }

  function tabs() {
    const visible = SECTIONS.filter((s) => (!only || only.includes(s.id)) && s.visible(ctx.session, ctx));
    if (!visible.some((s) => s.id === ctx.current)) ctx.current = visible[0]?.id;
    const bar = h('div', { class: 'cbp-tabs', role: 'tablist', 'aria-label': t('title') },
      visible.map((s) => h('button', {
        type: 'button', role: 'tab', class: 'cbp-tab', id: `cbp-tab-${s.id}`, 'aria-controls': 'cbp-view',
        'aria-selected': String(s.id === ctx.current), tabindex: s.id === ctx.current ? 0 : -1,
        dataset: { section: s.id },
        onclick: () => { ctx.current = s.id; draw(); shell.querySelector(`#cbp-tab-${s.id}`)?.focus(); },
        onkeydown: (event) => {
          const index = visible.indexOf(s);
          const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
          if (!step) return;
          event.preventDefault();
          ctx.current = visible[(index + step + visible.length) % visible.length].id;
          draw();
          shell.querySelector(`#cbp-tab-${ctx.current}`)?.focus();
        },
      }, s.title(t))));
    return { bar, section: visible.find((s) => s.id === ctx.current) };
  }

  function sectionBody(section) {
    if (!section) return null;
    if (section.render) return section.render(ctx);
    const id = section.id;
    const waiting = h('p', { class: 'cbp-muted' }, t('loading'));
    section.load().then((loaded) => {
      section.render = loaded.render;
      if (ctx.current === id) draw();
    }, () => {
      waiting.replaceWith(h('div', { class: 'cbp-failure', role: 'alert' },
        h('p', { class: 'cbp-error' }, t('error_network')),
        h('button', { type: 'button', class: 'cbp-btn cbp-retry', onclick: () => draw() }, t('retry'))));
    });
    return waiting;
  }

  function warmUp() {
    // After the first render: fetch the other visible sections' modules while the user reads.
    const later = () => SECTIONS.filter((s) => s.load && s.visible(ctx.session, ctx)).forEach((s) => s.load().catch(() => {}));
    (globalThis.requestIdleCallback || ((fn) => setTimeout(fn, 200)))(later);
  }

  function draw() {
    // A redraw (data or a section's module arriving) keeps the keyboard user on the selected tab.
    const active = shell.ownerDocument.activeElement;
    const tabFocused = !!active && shell.contains(active) && active.classList.contains('cbp-tab');
    const { bar, section } = tabs();
    const view = h('div', { class: 'cbp-view', id: 'cbp-view', role: 'tabpanel', 'aria-labelledby': `cbp-tab-${ctx.current}` },
      sectionBody(section));
    main.replaceChildren(bar, view);
    const selected = bar.querySelector('[aria-selected="true"]');
    selected?.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    if (tabFocused) selected?.focus();
    onResize();
  }

  function showAttention(items) {
    attention.replaceChildren(...items.map((item) => h('p', {
      class: `cbp-attention-item cbp-attention-${item.severity}`, dataset: { code: item.code },
    }, locale === 'en' ? item.message_en : item.message_ru,
    item.action && item.code === 'needs_reauth'
      ? h('a', { class: 'cbp-btn cbp-primary', href: item.action, target: '_blank', rel: 'noopener' }, t('reconnect'))
      : null)));
    attention.hidden = items.length === 0;
  }

  async function fetched(name, path) {
    const early = prefetched[name];
    prefetched[name] = null; // a retry asks again
    const outcome = early ? await early : await settle(api.get(path));
    if (outcome.failure) throw outcome.failure;
    return outcome.value;
  }

  // A section that works before the deal has an account, on its own (no tabs: the others need the account).
  // When it has opened the account it calls ctx.reload(): the panel comes back with its tabs, on it.
  // `header`: what stays above the section (the ledger's «open the account» when the card opened there).
  async function openWithoutAccount(section, header = null) {
    ctx.current = section.id;
    ctx.reload = load;
    main.replaceChildren(h('p', { class: 'cbp-muted' }, t('loading')));
    try {
      if (!section.render) section.render = (await section.load()).render;
    } catch {
      main.replaceChildren(h('div', { class: 'cbp-failure', role: 'alert' },
        h('p', { class: 'cbp-error' }, t('error_network')),
        h('button', { type: 'button', class: 'cbp-btn cbp-retry', onclick: () => openWithoutAccount(section, header) }, t('retry'))));
      return onResize();
    }
    main.replaceChildren(...[header,
      h('div', { class: 'cbp-view', id: 'cbp-view', dataset: { section: section.id } }, section.render(ctx))].filter(Boolean));
    return onResize();
  }

  async function inpatientBusiness() {
    try {
      return (await api.get(`${stayPath()}/inpatient-business`)).inpatient;
    } catch {
      return false; // unknown: the ledger's screen, which still offers the tab
    }
  }

  async function load() {
    if (!main.querySelector('.cbp-loading')) main.replaceChildren(summarySkeleton(t));
    try {
      ctx.session = await fetched('session', '/api/v1/widget/session');
    } catch (failure) {
      prefetched.stay = null; // asked again after the retry, not answered from before the outage
      if (failure.status === 403) return notice(t('no_role'));
      if (failure.status === 401) return notice(t('signed_out'));
      main.replaceChildren(failureBox(t, failure, load));
      return onResize();
    }
    ctx.fmt = makeFormat(locale, ctx.session.portal);
    showAttention(ctx.session.attention || []);
    if (only && !only.includes('account')) {
      return SECTIONS.some((s) => only.includes(s.id) && s.visible(ctx.session, ctx)) ? draw() : notice(t('no_role'));
    }
    if (!ctx.session.features.stay) return notice(t('no_role'));
    if (!ctx.dealId) return notice(t('no_deal'));
    try {
      ctx.stay = await fetched('stay', stayPath());
    } catch (failure) {
      if (failure.status === 404) {
        const slot = h('div', { class: 'cbp-form-slot' });
        // The account opened here lands on its own tab, whichever section the card was showing.
        const admit = h('button', { type: 'button', class: 'cbp-btn cbp-primary cbp-action', dataset: { action: 'admit' },
          onclick: () => { ctx.current = 'account'; openForm(ctx, slot, 'admit'); } }, t('a_admit'));
        // A hospital's deal starts before its account: arrival, then admission into a bed, in «Стационар».
        // The server says whether this deal is one (asked for its arrival, in a building's pipeline or in
        // the ready-to-sign stage): then the card opens there, the ledger's «open the account» one line
        // above it; any other deal keeps the ledger's screen.
        const inpatient = SECTIONS.find((s) => s.id === 'inpatient');
        if (inpatient?.visible(ctx.session, ctx) && await inpatientBusiness()) {
          return openWithoutAccount(inpatient, h('div', { class: 'cbp-ledger-entry' },
            h('p', { class: 'cbp-muted' }, t('no_stay')), admit, slot));
        }
        const stayTab = inpatient?.visible(ctx.session, ctx) ? h('button', {
          type: 'button', class: 'cbp-btn cbp-action', dataset: { action: 'inpatient' },
          onclick: () => openWithoutAccount(inpatient) }, t('tab_inpatient')) : null;
        return notice(t('no_stay'), h('div', {}, admit, stayTab, slot));
      }
      if (failure.status === 403) return notice(t('no_role'));
      main.replaceChildren(failureBox(t, failure, load));
      return onResize();
    }
    draw();
    warmUp();
  }

  await load();
  ctx.draw = draw;
  return {
    reload: load,
    destroy() {
      resizeObserver?.disconnect();
      root.replaceChildren();
    },
  };
}

// The settings screen on its own (amo advanced settings page, Bitrix24 app main page): admins only.
export function mountSettings(root, options) {
  return mountPanel(root, { ...options, dealId: null, sections: ['settings', 'log'] });
}
