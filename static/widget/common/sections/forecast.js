// Stay forecast as an inline SVG: the available balance day by day at the current daily rate, the zero
// line, today and the paid-through date marked. No chart library: it is one polyline, and it ships as
// text inside the panel (nothing to bundle, nothing fetched at run time).
import { addDays, h } from '../core.js';

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  for (const c of children) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export function forecastPoints(stay, days) {
  const start = Number(stay.available);
  const rate = Number(stay.daily_rate);
  return Array.from({ length: days + 1 }, (_, k) => ({ date: addDays(stay.today, k), value: start - rate * k }));
}

export function forecastChart(ctx, stay) {
  const { t, fmt } = ctx;
  const f = stay.forecast || {};
  const days = Math.max(14, Math.min(60, (f.days_left ?? 14) + 7));
  const points = forecastPoints(stay, days);
  const W = 320, H = 160, L = 8, R = 8, T = 18, B = 22;
  const values = points.map((p) => p.value).concat([0]);
  const max = Math.max(...values), min = Math.min(...values);
  const span = max - min || 1;
  const x = (k) => L + (k / days) * (W - L - R);
  const y = (v) => T + ((max - v) / span) * (H - T - B);
  const line = points.map((p, k) => `${x(k).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ');
  const paidIndex = f.paid_through ? points.findIndex((p) => p.date === f.paid_through) : -1;
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'cbp-chart', role: 'img',
    'aria-label': `${t('fc_caption', { days })}; ${f.unlimited ? t('not_limited') : t('fc_paid_through', { date: fmt.date(f.paid_through) })}`,
  },
  s('line', { x1: L, x2: W - R, y1: y(0), y2: y(0), class: 'cbp-chart-zero' }),
  s('text', { x: W - R, y: y(0) - 3, class: 'cbp-chart-label', 'text-anchor': 'end' }, fmt.money('0')),
  s('polyline', { points: line, class: 'cbp-chart-line', fill: 'none' }),
  s('text', { x: L, y: 12, class: 'cbp-chart-label' }, fmt.money(stay.available)),
  s('text', { x: L, y: H - 6, class: 'cbp-chart-label' }, `${t('fc_today')} ${fmt.date(stay.today)}`),
  s('text', { x: W - R, y: H - 6, class: 'cbp-chart-label', 'text-anchor': 'end' }, fmt.date(points[days].date)));
  if (paidIndex >= 0) {
    const px = x(paidIndex);
    svg.append(
      s('line', { x1: px, x2: px, y1: T - 4, y2: H - B, class: 'cbp-chart-paid' }),
      s('circle', { cx: px, cy: y(points[paidIndex].value), r: 3, class: 'cbp-chart-dot' }),
      s('text', { x: Math.min(px, W - 70), y: T - 6 + 12, class: 'cbp-chart-label cbp-chart-paid-label',
        'text-anchor': px > W - 70 ? 'end' : 'start', dx: px > W - 70 ? 0 : 4 }, fmt.date(f.paid_through)));
  }
  return svg;
}

export const forecastSection = {
  id: 'forecast',
  title: (t) => t('tab_forecast'),
  visible: (session) => session.features.stay,
  render(ctx) {
    const { t, fmt, stay } = ctx;
    const f = stay.forecast || {};
    const days = Math.max(14, Math.min(60, (f.days_left ?? 14) + 7));
    const caption = f.unlimited ? t('not_limited') : t('fc_paid_through', { date: fmt.date(f.paid_through) });
    if (!stay.money_visible) {
      return h('div', { class: 'cbp-forecast' }, h('p', { class: 'cbp-forecast-caption' }, caption),
        h('p', { class: 'cbp-muted' }, t('fc_no_money')));
    }
    return h('figure', { class: 'cbp-forecast' }, forecastChart(ctx, stay),
      h('figcaption', { class: 'cbp-forecast-caption' }, `${t('fc_caption', { days })}: ${caption}`));
  },
};
