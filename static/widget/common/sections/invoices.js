// The deal's invoices (the invoices back-end, GET /api/v1/deals/{deal}/invoices): number, kind, status,
// dates; totals and what is still owed for finance only (the API omits them otherwise); the issued PDF
// through the shell's transport. Finance and admins also get the forms: issue an invoice (POST
// deals/{deal}/invoices with issue: true), record a payment (POST invoices/{id}/payments) and a credit
// note, in full or by lines (POST invoices/{id}/credit-notes). Each form is forms.js's actionForm: checks
// before submit, the server's field errors beside the field, one Idempotency-Key per form.
import { ApiFailure, download, h, isoToday } from '../core.js';
import { actionForm, normaliseAmount } from '../forms.js';

const KINDS = ['patient', 'insurer', 'assistance', 'partner_clinic'];
// Which counterparties each kind is addressed to (invoices/kinds.py) and the details issuing needs.
const PARTIES = {
  patient: ['payer', 'corporate'],
  insurer: ['insurer'],
  assistance: ['assistance'],
  partner_clinic: ['partner_clinic'],
};
const DETAILS = {
  patient: [],
  insurer: ['policy_no', 'gop_no', 'gop_date', 'insured_name', 'case_no', 'period_from', 'period_to'],
  assistance: ['case_no', 'insurer_name', 'insured_name'],
  partner_clinic: ['partner_invoice_no', 'partner_invoice_date', 'patient_name'],
};
const DATE_DETAILS = new Set(['gop_date', 'period_from', 'period_to', 'partner_invoice_date']);
const CURRENCIES = ['RUB', 'EUR', 'USD', 'CNY', 'GBP', 'CHF', 'KZT', 'BYN', 'AED', 'TRY'];
const METHODS = ['transfer', 'cash', 'card', 'offset'];
const QUANTITY = /^\d{1,9}(\.\d{1,3})?$/;
const PAYABLE = new Set(['issued', 'partly_paid']);
const CREDITABLE = new Set(['issued', 'partly_paid', 'paid']);

// An amount in its own currency (the portal's formatter knows only the portal's currency).
function moneyIn(ctx, amount, currency) {
  if (amount == null) return '';
  const locale = (ctx.session?.portal?.locale || 'ru_RU').replace('_', '-');
  try {
    return new Intl.NumberFormat(locale, { style: 'currency', currency: currency || ctx.fmt.currency }).format(String(amount));
  } catch {
    return `${amount} ${currency || ''}`.trim();
  }
}

// A check made in the browser that the form shows exactly like a server's field error (beside the field).
function refuse(fields) {
  return new ApiFailure(422, { error: { code: 'client_validation', message: 'invalid', fields } }, false);
}

// "2.000" → "2", "1.500" → "1,5": in the portal's locale, like its amounts.
function quantityText(ctx, quantity) {
  const locale = (ctx.session?.portal?.locale || 'ru_RU').replace('_', '-');
  try {
    return new Intl.NumberFormat(locale, { maximumFractionDigits: 3 }).format(String(quantity));
  } catch {
    return String(quantity);
  }
}

function sumOf(amounts) {
  // Exact in minor units: the decimal strings have at most two decimals.
  const minor = amounts.reduce((acc, a) => {
    const [whole, frac = ''] = String(a).replace('-', '').split('.');
    const value = BigInt(whole || '0') * 100n + BigInt((frac + '00').slice(0, 2));
    return acc + (String(a).startsWith('-') ? -value : value);
  }, 0n);
  const sign = minor < 0n ? '-' : '';
  const abs = minor < 0n ? -minor : minor;
  return `${sign}${abs / 100n}.${String(abs % 100n).padStart(2, '0')}`;
}

export const invoicesSection = {
  id: 'invoices',
  title: (t) => t('tab_invoices'),
  visible: (session) => session.features.stay,
  render(ctx) {
    const { t, fmt } = ctx;
    const finance = !!ctx.session?.features?.money;
    const list = h('div', { class: 'cbp-invoice-list', 'aria-live': 'polite' }, h('p', { class: 'cbp-muted' }, t('loading')));
    const slot = h('div', { class: 'cbp-form-slot' });
    const label = (prefix, value) => {
      const text = t(`${prefix}_${value}`);
      return text === `${prefix}_${value}` ? value : text;
    };
    // The portal's day as the server counts it (the stay carries it), else the portal's timezone here.
    const today = () => ctx.stay?.today || isoToday(ctx.session?.portal?.timezone);
    const close = () => { slot.replaceChildren(); ctx.resized?.(); };

    function mount(form) {
      slot.replaceChildren(form);
      ctx.resized?.();
    }

    // ---- issue ---------------------------------------------------------------------------------------
    async function counterparties() {
      ctx.cache.counterparties = ctx.cache.counterparties
        || ctx.api.get('/api/v1/counterparties').catch((e) => { ctx.cache.counterparties = null; throw e; });
      return ctx.cache.counterparties;
    }

    function issueSpec(parties, state) {
      const kind = state.kind;
      const wanted = PARTIES[kind] || [];
      const options = parties.filter((p) => wanted.includes(p.kind))
        .map((p) => ({ value: p.id, label: p.currency ? `${p.name} · ${p.currency}` : p.name }));
      const details = (DETAILS[kind] || []).map((name) => ({
        name: `details.${name}`, label: t(`d_${name}`), required: true,
        type: DATE_DETAILS.has(name) ? 'date' : 'text', maxLength: DATE_DETAILS.has(name) ? null : 200,
      }));
      const lines = [];
      for (let i = 0; i < state.lines; i += 1) {
        lines.push(
          { name: `lines[${i}].name`, label: `${t('f_line_name')} ${i + 1}`, type: 'text', required: true, maxLength: 500 },
          { name: `lines[${i}].quantity`, label: t('f_quantity'), type: 'text', required: true, value: '1', placeholder: '1' },
          { name: `lines[${i}].unit_price`, label: t('f_unit_price'), type: 'amount', required: true },
        );
      }
      // Marshmallow names list items "lines.0.quantity"; the domain "lines[0].quantity".
      const fieldMap = { 'counterparty.kpp': 'counterparty_id', counterparty: 'counterparty_id' };
      for (const name of ['inn', 'kpp', 'address', 'country', 'bik', 'account', 'swift', 'iban']) {
        fieldMap[`counterparty.${name}`] = 'counterparty_id';
        fieldMap[`requisites.${name}`] = 'counterparty_id';
      }
      for (let i = 0; i < state.lines; i += 1) {
        for (const part of ['name', 'quantity', 'unit_price']) fieldMap[`lines.${i}.${part}`] = `lines[${i}].${part}`;
      }
      fieldMap.lines = `lines[0].name`;
      return {
        id: 'issue-invoice', title: t('inv_issue'), submitLabel: t('inv_issue_submit'), fieldMap,
        fields: [
          { name: 'kind', label: t('f_invoice_kind'), type: 'select', required: true, value: kind,
            options: KINDS.map((k) => ({ value: k, label: label('ik', k) })) },
          { name: 'counterparty_id', label: t('f_counterparty'), type: 'select', required: true, options },
          { name: 'price_currency', label: t('f_price_currency'), type: 'select', required: true,
            value: fmt.currency, options: CURRENCIES.map((c) => ({ value: c, label: c })) },
          { name: 'invoice_currency', label: t('f_invoice_currency'), type: 'select', emptyLabel: t('inv_currency_party'),
            options: CURRENCIES.map((c) => ({ value: c, label: c })) },
          { name: 'issue_date', label: t('f_issue_date'), type: 'date', required: true, value: today() },
          ...(details.length ? [{ name: 'h-details', type: 'heading', label: t('inv_details') }, ...details] : []),
          { name: 'h-lines', type: 'heading', label: t('inv_lines') },
          ...lines,
        ],
        send: (v, key) => {
          const bad = {};
          const body = {
            kind: v.kind, counterparty_id: Number(v.counterparty_id), price_currency: v.price_currency,
            issue_date: v.issue_date, issue: true, lines: [],
          };
          if (v.invoice_currency) body.invoice_currency = v.invoice_currency;
          const detailValues = {};
          for (const name of DETAILS[kind] || []) if (v[`details.${name}`]) detailValues[name] = v[`details.${name}`];
          if (Object.keys(detailValues).length) body.details = detailValues;
          for (let i = 0; i < state.lines; i += 1) {
            const quantity = normaliseAmount(v[`lines[${i}].quantity`]);
            // The shape is checked here; the value (more than zero …) is the server's to judge.
            if (!QUANTITY.test(quantity)) bad[`lines[${i}].quantity`] = [t('v_quantity')];
            body.lines.push({ name: v[`lines[${i}].name`], quantity, unit_price: v[`lines[${i}].unit_price`] });
          }
          if (Object.keys(bad).length) return Promise.reject(refuse(bad));
          // A submit whose outcome is unknown (network error, 5xx) may have issued the invoice. Until a
          // definite answer, every rebuild of this form (a line added or removed, another kind) sends under
          // that key: the server then replays the first outcome or refuses the changed body, never issues
          // a second invoice.
          const sent = state.unsettledKey || key;
          return ctx.api.post(`/api/v1/deals/${encodeURIComponent(ctx.dealId)}/invoices`, body, sent).then(
            (invoice) => { state.unsettledKey = null; return invoice; },
            (failure) => {
              state.unsettledKey = failure instanceof ApiFailure && failure.network ? sent : null;
              if (failure instanceof ApiFailure && failure.code === 'idempotency_key_reused') load();
              throw failure;
            },
          );
        },
        done: (invoice) => {
          slot.replaceChildren(issued(invoice));
          ctx.toast(t('done_invoice', { number: invoice.number || '' }));
          load();
        },
      };
    }

    // What the form holds now, by field name, so a rebuild (kind changed, a line added or removed) keeps it.
    function values(form) {
      const held = {};
      for (const el of form.querySelectorAll('input, select, textarea')) if (el.name) held[el.name] = el.value;
      return held;
    }

    async function openIssue(state = { kind: 'insurer', lines: 1 }, held = {}) {
      let parties;
      try {
        parties = await counterparties();
      } catch (failure) {
        mount(ctx.failureBox(failure, () => openIssue(state, held)));
        return;
      }
      const form = actionForm(t, issueSpec(parties, state), close);
      for (const [name, value] of Object.entries(held)) {
        const el = form.elements.namedItem(name);
        if (el && 'value' in el && [...(el.options || [{ value }])].some((o) => o.value === value)) el.value = value;
      }
      form.elements.namedItem('kind').addEventListener('change', (event) => {
        openIssue({ ...state, kind: event.target.value }, values(form));
      });
      // Add / remove a line: the form is rebuilt with the values kept (a new key: a new body; but see
      // `unsettledKey` in issueSpec after a submit whose outcome is unknown).
      for (let i = 0; i < state.lines; i += 1) {
        const price = form.querySelector(`#cbp-issue-invoice-lines-${i}--unit_price`)?.closest('.cbp-field');
        if (!price) continue;
        price.classList.add('cbp-line-end');
        if (state.lines > 1) {
          price.after(h('button', {
            type: 'button', class: 'cbp-btn cbp-small-btn cbp-line-remove', dataset: { line: i },
            'aria-label': `${t('inv_line_remove')} ${i + 1}`,
            onclick: () => {
              const kept = values(form);
              for (let j = i; j < state.lines - 1; j += 1) {
                for (const part of ['name', 'quantity', 'unit_price']) kept[`lines[${j}].${part}`] = kept[`lines[${j + 1}].${part}`];
              }
              openIssue({ ...state, lines: state.lines - 1 }, kept);
            },
          }, t('inv_line_remove')));
        }
      }
      form.querySelector('.cbp-form-error').before(h('button', {
        type: 'button', class: 'cbp-btn cbp-small-btn cbp-line-add',
        onclick: () => openIssue({ ...state, lines: state.lines + 1 }, values(form)),
      }, t('inv_line_add')));
      mount(form);
      form.querySelector('select, input')?.focus();
    }

    function issued(invoice) {
      const converted = invoice.price_currency !== invoice.invoice_currency;
      const lineTotal = converted ? sumOf((invoice.lines || []).map((l) => l.amount)) : null;
      return h('div', { class: 'cbp-summary cbp-invoice-result', role: 'status', dataset: { invoice: invoice.id } },
        h('div', { class: 'cbp-status-line' },
          h('b', { class: 'cbp-invoice-number' }, `№ ${invoice.number}`),
          h('span', { class: `cbp-badge cbp-badge-${invoice.status}` }, label('is', invoice.status))),
        converted ? h('div', { class: 'cbp-row' }, h('span', { class: 'cbp-label-text' }, t('inv_total_price', { currency: invoice.price_currency })),
          h('b', { class: 'cbp-invoice-price-total' }, moneyIn(ctx, lineTotal, invoice.price_currency))) : null,
        h('div', { class: 'cbp-row' }, h('span', { class: 'cbp-label-text' }, t('inv_total')),
          h('b', { class: 'cbp-invoice-total' }, moneyIn(ctx, invoice.total, invoice.invoice_currency))),
        invoice.rate_text ? h('p', { class: 'cbp-muted cbp-small cbp-invoice-rate' }, invoice.rate_text) : null,
        invoice.total_in_words ? h('p', { class: 'cbp-small cbp-invoice-words' }, invoice.total_in_words) : null,
        h('div', { class: 'cbp-form-actions' },
          pdfButton(invoice),
          h('button', { type: 'button', class: 'cbp-btn', onclick: close }, t('close'))));
    }

    // ---- payment ---------------------------------------------------------------------------------------
    function paymentSpec(invoice) {
      return {
        id: 'invoice-payment', title: t('inv_pay_title', { number: invoice.number }), submitLabel: t('inv_pay'),
        intro: `${t('inv_outstanding')} ${moneyIn(ctx, invoice.outstanding, invoice.invoice_currency)}`,
        fieldMap: { 'allocations[0].amount': 'amount', 'allocations.0.amount': 'amount', currency: 'amount' },
        fields: [
          { name: 'amount', label: `${t('f_amount')}, ${invoice.invoice_currency}`, type: 'amount', required: true },
          { name: 'payment_date', label: t('f_payment_date'), type: 'date', required: true, value: today() },
          { name: 'method', label: t('f_method'), type: 'select', required: true, value: 'transfer',
            options: METHODS.map((m) => ({ value: m, label: label('m', m) })) },
          { name: 'bank_reference', label: t('f_bank_reference'), type: 'text', maxLength: 100 },
        ],
        send: (v, key) => ctx.api.post(`/api/v1/invoices/${invoice.id}/payments`, v, key),
        done: (result) => {
          close();
          ctx.toast(t('done_invoice_payment', { status: label('is', result.invoice.status) }));
          load();
        },
      };
    }

    // ---- credit note -----------------------------------------------------------------------------------
    function creditSpec(invoice) {
      const open = (invoice.lines || []).filter((l) => !l.credited);
      const lineFields = open.map((l) => ({
        name: `line_${l.id}`, type: 'checkbox',
        label: `${l.name} · ${quantityText(ctx, l.quantity)} × ${moneyIn(ctx, l.unit_price, invoice.price_currency)}`,
      }));
      return {
        id: 'credit-note', title: t('inv_credit_title', { number: invoice.number }), submitLabel: t('inv_credit'), danger: true,
        fieldMap: { line_ids: 'scope', 'line_ids.0': 'scope', invoice: 'scope' },
        fields: [
          { name: 'reason', label: t('f_reason'), type: 'text', required: true, maxLength: 2000 },
          { name: 'scope', label: t('f_credit_scope'), type: 'select', required: true, value: 'full',
            options: [{ value: 'full', label: t('inv_credit_full') }, { value: 'lines', label: t('inv_credit_lines') }] },
          ...(lineFields.length ? [{ name: 'h-lines', type: 'heading', label: t('inv_lines') }, ...lineFields] : []),
        ],
        send: (v, key) => {
          const body = { reason: v.reason };
          if (v.scope === 'lines') {
            body.line_ids = open.filter((l) => v[`line_${l.id}`]).map((l) => l.id);
            if (!body.line_ids.length) return Promise.reject(refuse({ scope: [t('v_credit_lines')] }));
          }
          return ctx.api.post(`/api/v1/invoices/${invoice.id}/credit-notes`, body, key);
        },
        done: (result) => {
          close();
          ctx.toast(t('done_credit_note', { status: label('is', result.status) }));
          load();
        },
      };
    }

    // The line boxes of a credit note matter only when crediting by lines.
    function byLines(form) {
      const scope = form.elements.namedItem('scope');
      const parts = [...form.querySelectorAll('.cbp-field-check, .cbp-form-heading')];
      const sync = () => { for (const el of parts) el.hidden = scope.value !== 'lines'; ctx.resized?.(); };
      scope.addEventListener('change', sync);
      sync();
    }

    function openForm(spec, after) {
      const form = actionForm(t, spec, close);
      after?.(form);
      mount(form);
      form.querySelector('input, select, textarea')?.focus();
    }

    // ---- list ------------------------------------------------------------------------------------------
    async function pdf(invoice, button) {
      button.disabled = true;
      try {
        download(await ctx.api.blob(`/api/v1/invoices/${invoice.id}.pdf`), `${invoice.number || invoice.id}.pdf`);
      } catch (failure) {
        ctx.toast(ctx.errorText(failure), true);
      } finally {
        button.disabled = false;
      }
    }

    function pdfButton(invoice) {
      if (invoice.status === 'draft') return null;
      const button = h('button', { type: 'button', class: 'cbp-btn cbp-small-btn', dataset: { pdf: invoice.id } }, t('inv_pdf'));
      button.addEventListener('click', () => pdf(invoice, button));
      return button;
    }

    function card(invoice) {
      const money = invoice.total !== undefined;
      const owed = money && Number(invoice.outstanding) > 0;
      const ccy = invoice.invoice_currency;
      const actions = finance ? [
        PAYABLE.has(invoice.status) ? h('button', {
          type: 'button', class: 'cbp-btn cbp-small-btn', dataset: { invoiceAction: 'pay' },
          onclick: () => openForm(paymentSpec(invoice)),
        }, t('inv_pay')) : null,
        CREDITABLE.has(invoice.status) ? h('button', {
          type: 'button', class: 'cbp-btn cbp-small-btn', dataset: { invoiceAction: 'credit' },
          onclick: () => openForm(creditSpec(invoice), byLines),
        }, t('inv_credit')) : null,
      ] : [];
      return h('li', { class: 'cbp-item', dataset: { invoice: invoice.id, status: invoice.status } },
        h('div', { class: 'cbp-item-main' },
          h('span', {}, h('b', {}, invoice.number ? `№ ${invoice.number}` : t('inv_draft_number')), ' · ',
            label('ik', invoice.kind)),
          h('span', { class: `cbp-badge cbp-badge-${invoice.status}` }, label('is', invoice.status))),
        h('div', { class: 'cbp-item-main cbp-small' },
          h('span', { class: 'cbp-muted' }, [
            invoice.issue_date ? `${t('inv_issued')} ${fmt.date(invoice.issue_date)}` : '',
            invoice.due_date ? ` · ${t('inv_due')} ${fmt.date(invoice.due_date)}` : '',
          ].join('')),
          money ? h('span', {}, moneyIn(ctx, invoice.total, ccy), owed
            ? h('span', { class: 'cbp-debt' }, ` · ${t('inv_outstanding')} ${moneyIn(ctx, invoice.outstanding, ccy)}`)
            : null) : null),
        h('div', { class: 'cbp-item-actions' }, pdfButton(invoice), actions));
    }

    // What the patient, the insurer and the assistance company owe on this deal, and what we owe partners.
    function settlements(view) {
      const rows = [];
      for (const [kind, byCurrency] of Object.entries(view?.by_kind || {})) {
        for (const [ccy, p] of Object.entries(byCurrency)) {
          rows.push(h('li', { class: 'cbp-item', dataset: { settlement: `${kind}-${ccy}` } },
            h('div', { class: 'cbp-item-main' },
              h('span', {}, label('ik', kind)),
              h('b', { class: Number(p.outstanding) > 0 ? 'cbp-debt' : null },
                `${t(kind === 'partner_clinic' ? 'inv_we_owe' : 'inv_outstanding')} ${moneyIn(ctx, p.outstanding, ccy)}`)),
            h('div', { class: 'cbp-muted cbp-small' },
              `${t('inv_invoiced')} ${moneyIn(ctx, p.invoiced, ccy)} · ${t('inv_paid')} ${moneyIn(ctx, p.paid, ccy)}`,
              Number(p.credited) > 0 ? ` · ${t('inv_credited')} ${moneyIn(ctx, p.credited, ccy)}` : '')));
        }
      }
      return rows.length
        ? h('section', { class: 'cbp-list cbp-settlements' }, h('h3', { class: 'cbp-h' }, t('inv_settlements')),
          h('ul', { class: 'cbp-simple-list' }, rows))
        : null;
    }

    async function load() {
      try {
        const deal = encodeURIComponent(ctx.dealId);
        const [invoices, view] = await Promise.all([
          ctx.api.get(`/api/v1/deals/${deal}/invoices`),
          finance ? ctx.api.get(`/api/v1/deals/${deal}/settlements`) : null,
        ]);
        list.replaceChildren(...[invoices.length
          ? h('ul', { class: 'cbp-simple-list' }, invoices.map(card))
          : h('p', { class: 'cbp-muted' }, t('inv_empty')), invoices.length ? settlements(view) : null].filter(Boolean));
      } catch (failure) {
        list.replaceChildren(ctx.failureBox(failure, load));
      }
      ctx.resized?.();
    }

    const body = h('div', { class: 'cbp-invoices' },
      finance ? h('div', { class: 'cbp-actions', role: 'group', 'aria-label': t('tab_invoices') },
        h('button', { type: 'button', class: 'cbp-btn cbp-action', dataset: { action: 'issue-invoice' },
          onclick: () => openIssue() }, t('inv_issue'))) : null,
      slot, list);
    load();
    return body;
  },
};
