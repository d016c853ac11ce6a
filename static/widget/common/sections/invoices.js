// The deal's invoices (the invoices back-end, GET /api/v1/deals/{deal}/invoices): number, kind, status,
// dates; totals and what is still owed for finance only (the API omits them otherwise); the issued PDF
// through the shell's transport. Creating and paying invoices stays in the invoices API for now.
import { download, h } from '../core.js';

export const invoicesSection = {
  id: 'invoices',
  title: (t) => t('tab_invoices'),
  visible: (session) => session.features.stay,
  render(ctx) {
    const { t, fmt } = ctx;
    const body = h('div', { class: 'cbp-invoices', 'aria-live': 'polite' }, h('p', { class: 'cbp-muted' }, t('loading')));
    const label = (prefix, value) => {
      const text = t(`${prefix}_${value}`);
      return text === `${prefix}_${value}` ? value : text;
    };

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

    function card(invoice) {
      const money = invoice.total !== undefined;
      const owed = money && Number(invoice.outstanding) > 0;
      const button = invoice.status !== 'draft'
        ? h('button', { type: 'button', class: 'cbp-btn cbp-small-btn', dataset: { pdf: invoice.id } }, t('inv_pdf'))
        : null;
      button?.addEventListener('click', () => pdf(invoice, button));
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
          money ? h('span', {}, fmt.money(invoice.total), owed
            ? h('span', { class: 'cbp-debt' }, ` · ${t('inv_outstanding')} ${fmt.money(invoice.outstanding)}`)
            : null) : null),
        button);
    }

    async function load() {
      try {
        const invoices = await ctx.api.get(`/api/v1/deals/${encodeURIComponent(ctx.dealId)}/invoices`);
        body.replaceChildren(invoices.length
          ? h('ul', { class: 'cbp-simple-list' }, invoices.map(card))
          : h('p', { class: 'cbp-muted' }, t('inv_empty')));
      } catch (failure) {
        body.replaceChildren(ctx.failureBox(failure, load));
      }
      ctx.resized?.();
    }
    load();
    return body;
  },
};
