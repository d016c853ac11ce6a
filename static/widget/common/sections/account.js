// The account section: summary (money only for finance), action forms, pending purchases and the last
// entries with a reversal for admins. Every form posts to /api/v1/deals/{deal}/stay/… and the response's
// stay summary replaces the one on screen.
import { addDays, h, isoToday } from '../core.js';
import { actionForm } from '../forms.js';

const METHODS = ['cash', 'card', 'transfer', 'insurance'];
const CHANNELS = ['phone', 'in_person', 'messenger', 'email', 'sms'];

function row(label, value, cls) {
  return h('div', { class: 'cbp-row' }, h('span', { class: 'cbp-label-text' }, label),
    h('b', { class: cls || null }, value));
}

function negative(amount) {
  return String(amount || '').trim().startsWith('-');
}

export function summaryCard(ctx, stay) {
  const { t, fmt } = ctx;
  const f = stay.forecast || {};
  const debt = stay.money_visible && negative(stay.balance);
  const card = h('div', { class: 'cbp-summary', dataset: { status: stay.status } },
    h('div', { class: 'cbp-status-line' },
      h('span', { class: `cbp-badge cbp-badge-${stay.status}` }, t(`status_${stay.status}`)),
      h('span', { class: 'cbp-muted' }, `${t('admitted')} ${fmt.date(stay.admission_date)}`,
        stay.discharge_date ? ` · ${t('discharged')} ${fmt.date(stay.discharge_date)}` : '')));
  if (stay.money_visible) {
    card.append(h('div', { class: 'cbp-hero' },
      h('span', { class: 'cbp-label-text' }, debt ? t('debt') : t('balance')),
      h('b', { class: `cbp-balance${debt ? ' cbp-debt' : ''}` }, fmt.money(stay.balance))));
    card.append(row(t('available'), fmt.money(stay.available), `cbp-available${negative(stay.available) ? ' cbp-debt' : ''}`));
    if (stay.holds && Number(stay.holds) > 0) card.append(row(t('holds'), fmt.money(stay.holds), 'cbp-holds'));
    card.append(row(t('daily_rate'), fmt.money(stay.daily_rate), 'cbp-rate'));
  }
  card.append(row(t('paid_through'), f.unlimited ? t('not_limited') : fmt.date(f.paid_through), 'cbp-paid-through'));
  if (f.days_left != null && stay.status === 'open') card.append(row(t('days_left'), String(f.days_left), 'cbp-days-left'));
  if (f.days_of_debt > 0) card.append(row(t('days_of_debt'), String(f.days_of_debt), 'cbp-debt'));
  if (stay.low_balance && stay.status === 'open') card.append(h('p', { class: 'cbp-warn', role: 'status' }, t('low_balance')));
  if (!stay.money_visible) card.append(h('p', { class: 'cbp-muted cbp-small' }, t('money_hidden')));
  return card;
}

// Same places, grey bars: a tab bar of the real height, then the summary's rows. The real panel replaces
// it without moving the summary card (tests/widget: test_no_layout_shift_while_the_summary_loads).
export function summarySkeleton(t) {
  const bar = () => h('span', { class: 'cbp-skel', 'aria-hidden': 'true' });
  return h('div', { class: 'cbp-loading', 'aria-busy': 'true' },
    h('div', { class: 'cbp-tabs', 'aria-hidden': 'true' }, h('span', { class: 'cbp-tab cbp-tab-skel' }, '\u00a0')),
    h('div', { class: 'cbp-summary' },
      h('div', { class: 'cbp-status-line' }, h('span', { class: 'cbp-muted' }, t('loading'))),
      h('div', { class: 'cbp-hero' }, bar(), bar()),
      h('div', { class: 'cbp-row' }, bar(), bar()),
      h('div', { class: 'cbp-row' }, bar(), bar()),
      h('div', { class: 'cbp-row' }, bar(), bar())));
}

const opts = (t, values, prefix) => values.map((v) => ({ value: v, label: t(`${prefix}_${v}`) }));

function stayPath(ctx, suffix = '') {
  return `/api/v1/deals/${encodeURIComponent(ctx.dealId)}/stay${suffix}`;
}

async function catalogue(ctx, what) {
  ctx.cache[what] = ctx.cache[what] || ctx.api.get(`/api/v1/${what}`).catch((e) => { ctx.cache[what] = null; throw e; });
  return ctx.cache[what];
}

export const FORMS = {
  async admit(ctx) {
    const { t } = ctx;
    const tariffs = (await catalogue(ctx, 'tariffs')).filter((x) => x.active);
    return {
      id: 'admit', title: t('a_admit'), submitLabel: t('a_admit'),
      fields: [
        { name: 'admission_date', label: t('f_admission_date'), type: 'date', required: true, value: isoToday(ctx.session.portal.timezone) },
        { name: 'tariff_id', label: t('f_tariff'), type: 'select', required: true, options: tariffs.map((x) => ({ value: x.id, label: x.daily_rate ? `${x.name} · ${ctx.fmt.money(x.daily_rate)}` : x.name })) },
        { name: 'representative.name', label: t('f_representative'), type: 'text', maxLength: 200 },
        { name: 'representative.phone', label: t('f_representative_phone'), type: 'text', maxLength: 32, placeholder: '+7 …' },
        ...(ctx.session.features.money ? [
          { name: 'deposit.amount', label: t('f_deposit_amount'), type: 'amount' },
          { name: 'deposit.method', label: t('f_method'), type: 'select', options: opts(t, METHODS, 'm') },
        ] : []),
      ],
      send: (v, key) => {
        const body = { admission_date: v.admission_date, tariff_id: Number(v.tariff_id) };
        if (v['representative.name']) {
          body.representative = { name: v['representative.name'], ...(v['representative.phone'] ? { phone: v['representative.phone'] } : {}) };
        }
        if (v['deposit.amount']) body.deposit = { amount: v['deposit.amount'], method: v['deposit.method'] || 'cash' };
        return ctx.api.post(stayPath(ctx), body, key);
      },
      done: (stay) => ctx.setStay(stay, t('done_admit')),
    };
  },
  deposit(ctx) {
    const { t } = ctx;
    return {
      id: 'deposit', title: t('a_deposit'), submitLabel: t('a_deposit'),
      fields: [
        { name: 'amount', label: t('f_amount'), type: 'amount', required: true },
        { name: 'method', label: t('f_method'), type: 'select', required: true, options: opts(t, METHODS, 'm'), value: 'transfer' },
        { name: 'payer', label: t('f_payer'), type: 'text', maxLength: 200, value: ctx.stay?.representative?.name },
      ],
      send: (v, key) => ctx.api.post(stayPath(ctx, '/deposits'), v, key),
      done: (r) => ctx.setStay(r.stay, t('done_deposit')),
    };
  },
  async charge(ctx) {
    const { t } = ctx;
    const articles = (await catalogue(ctx, 'articles')).filter((x) => x.active);
    return {
      id: 'charge', title: t('a_charge'), submitLabel: t('a_charge'),
      fields: [
        { name: 'amount', label: t('f_amount'), type: 'amount', required: true },
        { name: 'article_id', label: t('f_article'), type: 'select', required: true, options: articles.map((a) => ({ value: a.id, label: a.name })) },
        { name: 'reason', label: t('f_reason'), type: 'text', maxLength: 2000 },
        ...(ctx.session.features.reversal ? [{ name: 'override', label: t('f_override'), type: 'checkbox' }] : []),
      ],
      send: (v, key) => ctx.api.post(stayPath(ctx, '/charges'), { ...v, article_id: Number(v.article_id) }, key),
      done: (r) => ctx.setStay(r.stay, t('done_charge')),
    };
  },
  async purchase(ctx) {
    const { t } = ctx;
    const articles = (await catalogue(ctx, 'articles')).filter((x) => x.active);
    return {
      id: 'purchase', title: t('a_purchase'), submitLabel: t('a_purchase'),
      fields: [
        { name: 'description', label: t('f_description'), type: 'text', required: true, maxLength: 2000 },
        { name: 'amount', label: t('f_amount'), type: 'amount', required: true },
        { name: 'article_id', label: t('f_article'), type: 'select', options: articles.map((a) => ({ value: a.id, label: a.name })) },
      ],
      send: (v, key) => ctx.api.post(stayPath(ctx, '/purchases'),
        { ...v, ...(v.article_id ? { article_id: Number(v.article_id) } : {}) }, key),
      done: (r) => ctx.setStay(r.stay, t('done_purchase')),
    };
  },
  approve(ctx, purchase) {
    const { t } = ctx;
    const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    return {
      id: 'approve', title: t('approve_title', { what: purchase.description }), submitLabel: t('a_approve'),
      fields: [
        { name: 'consent.given_by', label: t('f_given_by'), type: 'text', required: true, maxLength: 200, value: ctx.stay?.representative?.name },
        { name: 'consent.channel', label: t('f_channel'), type: 'select', required: true, options: opts(t, CHANNELS, 'c'), value: 'phone' },
        { name: 'consent.given_at', label: t('f_given_at'), type: 'datetime', required: true, value: now },
      ],
      send: (v, key) => ctx.api.post(stayPath(ctx, `/purchases/${purchase.id}/approve`), {
        consent: { given_by: v['consent.given_by'], channel: v['consent.channel'], given_at: v['consent.given_at'] },
      }, key),
      done: (r) => ctx.setStay(r.stay, t('done_approve')),
    };
  },
  reject(ctx, purchase) {
    const { t } = ctx;
    return {
      id: 'reject', title: t('reject_title', { what: purchase.description }), submitLabel: t('a_reject'), danger: true,
      fields: [{ name: 'note', label: t('f_note'), type: 'text', maxLength: 2000 }],
      send: (v, key) => ctx.api.post(stayPath(ctx, `/purchases/${purchase.id}/reject`), v, key),
      done: (r) => ctx.setStay(r.stay, t('done_reject')),
    };
  },
  reversal(ctx, entry) {
    const { t } = ctx;
    return {
      id: 'reversal', title: t('reverse_title', { seq: entry.seq }), submitLabel: t('a_reverse'), danger: true,
      intro: `${t(`k_${entry.kind}`)} · ${ctx.fmt.money(entry.amount)} · ${ctx.fmt.date(entry.entry_date)}`,
      fields: [{ name: 'reason', label: t('f_reason'), type: 'text', required: true, maxLength: 2000 }],
      send: (v, key) => ctx.api.post(stayPath(ctx, `/entries/${entry.id}/reversal`), v, key),
      done: (r) => ctx.setStay(r.stay, t('done_reversal')),
    };
  },
  async tariff(ctx) {
    const { t } = ctx;
    const tariffs = (await catalogue(ctx, 'tariffs')).filter((x) => x.active);
    return {
      id: 'tariff', title: t('a_tariff'), submitLabel: t('a_tariff'),
      fields: [
        { name: 'tariff_id', label: t('f_tariff'), type: 'select', required: true, options: tariffs.map((x) => ({ value: x.id, label: x.daily_rate ? `${x.name} · ${ctx.fmt.money(x.daily_rate)}` : x.name })) },
        { name: 'effective_from', label: t('f_effective_from'), type: 'date', required: true, value: addDays(ctx.stay.today, 1) },
      ],
      send: (v, key) => ctx.api.post(stayPath(ctx, '/tariff'), { ...v, tariff_id: Number(v.tariff_id) }, key),
      done: (stay) => ctx.setStay(stay, t('done_tariff')),
    };
  },
  discharge(ctx) {
    const { t } = ctx;
    return {
      id: 'discharge', title: t('a_discharge'), submitLabel: t('a_discharge'), danger: true,
      fields: [
        { name: 'discharge_date', label: t('f_discharge_date'), type: 'date', required: true, value: ctx.stay.today },
        { name: 'refund_method', label: t('f_refund_method'), type: 'select', options: opts(t, METHODS, 'm') },
      ],
      send: (v, key) => ctx.api.post(stayPath(ctx, '/discharge'), v, key),
      done: (stay) => ctx.setStay(stay, t('done_discharge')),
    };
  },
};

export function openForm(ctx, slot, name, ...args) {
  const close = () => { slot.replaceChildren(); ctx.focusActions(); };
  slot.replaceChildren(h('p', { class: 'cbp-muted' }, ctx.t('loading')));
  Promise.resolve(FORMS[name](ctx, ...args)).then((spec) => {
    const form = actionForm(ctx.t, spec, close);
    slot.replaceChildren(form);
    form.querySelector('input, select, textarea')?.focus();
  }, (failure) => {
    slot.replaceChildren(ctx.failureBox(failure, () => openForm(ctx, slot, name, ...args)));
  });
}

export const accountSection = {
  id: 'account',
  title: (t) => t('tab_account'),
  visible: (session) => session.features.stay,
  render(ctx) {
    const { t, stay, session } = ctx;
    const slot = h('div', { class: 'cbp-form-slot' });
    const view = h('div', { class: 'cbp-account' }, summaryCard(ctx, stay));
    const open = stay.status === 'open';
    if (session.features.money && open) {
      view.append(h('div', { class: 'cbp-actions', role: 'group', 'aria-label': t('title') },
        ['deposit', 'charge', 'purchase', 'tariff', 'discharge'].map((name) => h('button', {
          type: 'button', class: 'cbp-btn cbp-action', dataset: { action: name },
          onclick: () => openForm(ctx, slot, name),
        }, t(`a_${name}`)))));
    }
    view.append(slot);
    const pending = stay.pending_purchases || [];
    if (pending.length) {
      view.append(h('section', { class: 'cbp-list cbp-pending' },
        h('h3', { class: 'cbp-h' }, t('pending_purchases')),
        pending.map((p) => h('div', { class: 'cbp-item', dataset: { purchase: p.id } },
          h('div', { class: 'cbp-item-main' }, h('span', {}, p.description), h('b', {}, ctx.fmt.money(p.amount))),
          h('div', { class: 'cbp-item-actions' },
            h('button', { type: 'button', class: 'cbp-btn cbp-primary', onclick: () => openForm(ctx, slot, 'approve', p) }, t('a_approve')),
            h('button', { type: 'button', class: 'cbp-btn', onclick: () => openForm(ctx, slot, 'reject', p) }, t('a_reject')))))));
    }
    const entries = stay.recent_entries || [];
    if (entries.length) {
      view.append(h('section', { class: 'cbp-list cbp-entries' },
        h('h3', { class: 'cbp-h' }, t('recent_entries')),
        entries.map((e) => h('div', { class: 'cbp-item', dataset: { entry: e.id, kind: e.kind } },
          h('div', { class: 'cbp-item-main' },
            h('span', {}, `${ctx.fmt.date(e.entry_date)} · ${t(`k_${e.kind}`)}`),
            h('b', { class: e.direction === 'debit' ? 'cbp-out' : 'cbp-in' },
              `${e.direction === 'debit' ? '−' : '+'}${ctx.fmt.money(e.amount)}`)),
          session.features.reversal && e.kind !== 'reversal'
            ? h('div', { class: 'cbp-item-actions' },
              h('button', { type: 'button', class: 'cbp-btn cbp-small-btn', 'aria-label': `${t('a_reverse')} №${e.seq}`,
                onclick: () => openForm(ctx, slot, 'reversal', e) }, t('a_reverse')))
            : null))));
    }
    return view;
  },
};
