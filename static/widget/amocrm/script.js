/*
 * ClinicBridge widget for amoCRM / Kommo (interface_version 2, AMD).
 * Every call to our server goes through self.$authorizedAjax, which adds the disposable X-Auth-Token
 * that proves the account and the user (research/amocrm.md §2.4); the panel never trusts its own state.
 * {{BASE_URL}} is replaced by `clinicbridge amocrm widget-zip --base-url …`.
 */
define(['jquery'], function ($) {
  'use strict';

  var BASE_URL = '{{BASE_URL}}';

  var CustomWidget = function () {
    var self = this;
    var area = null;

    function t(key) {
      var texts = self.i18n('panel') || {};
      return texts[key] || key;
    }

    function esc(value) {
      return $('<div>').text(value == null ? '' : String(value)).html();
    }

    function api(path, options) {
      return self.$authorizedAjax($.extend({ url: BASE_URL + path, dataType: 'json' }, options || {}));
    }

    function currentDealId() {
      var card = (window.APP && APP.data && APP.data.current_card) || null;
      return card && card.id ? String(card.id) : null;
    }

    function date(iso) {
      if (!iso) { return ''; }
      var parts = iso.split('-');
      return parts[2] + '.' + parts[1] + '.' + parts[0];
    }

    function panel(html) {
      $('.cb-panel').html(html);
    }

    function notice(message) {
      panel('<p class="cb-muted">' + esc(message) + '</p>');
    }

    function showError(message) {
      panel('<p class="cb-error" role="alert">' + esc(message) + '</p>' +
            '<button type="button" class="button-input cb-retry">' + esc(t('retry')) + '</button>');
    }

    function showStay(stay) {
      var rows = [];
      if (stay.money_visible && stay.balance_display) {
        rows.push('<div class="cb-row"><span>' + esc(t('balance')) + '</span><b class="cb-balance' +
                  (String(stay.balance).charAt(0) === '-' ? ' cb-debt' : '') + '">' + esc(stay.balance_display) +
                  '</b></div>');
      }
      var forecast = stay.forecast || {};
      rows.push('<div class="cb-row"><span>' + esc(t('paid_through')) + '</span><b class="cb-paid-through">' +
                esc(forecast.unlimited ? t('not_limited') : date(forecast.paid_through)) + '</b></div>');
      if (forecast.days_left != null) {
        rows.push('<div class="cb-row"><span>' + esc(t('days_left')) + '</span><b>' + esc(forecast.days_left) +
                  '</b></div>');
      }
      panel(rows.join(''));
    }

    function load() {
      var deal = currentDealId();
      panel('<p class="cb-muted">' + esc(t('loading')) + '</p>');
      api('/api/v1/widget/session').then(function (session) {
        // The session says what this user may see; a role without stays gets words, not a failed call.
        if (!session || !session.features || !session.features.stay) { notice(t('no_role')); return; }
        if (!deal) { notice(t('no_stay')); return; }
        api('/api/v1/deals/' + encodeURIComponent(deal) + '/stay').then(showStay, function (xhr) {
          var status = xhr && xhr.status;
          if (status === 404) { notice(t('no_stay')); }
          else if (status === 403) { notice(t('no_role')); }
          else { showError(t('error')); }
        });
      }, function (xhr) {
        var status = xhr && xhr.status;
        if (status === 403) { notice(t('no_role')); }
        else if (status === 401) { notice(t('signed_out')); }
        else { showError(t('error')); }
      });
    }

    this.callbacks = {
      render: function () {
        area = self.system().area;
        if (area === 'lcard') {
          self.render_template({
            caption: { class_name: 'cb-caption' },
            body: '<div class="cb-panel" aria-live="polite" style="max-width:100%;min-width:0;' +
                  'font-size:13px;line-height:1.5"></div>',
            render: ''
          });
          load();
        }
        return true;
      },
      init: function () {
        return true;
      },
      bind_actions: function () {
        $(document).off('click.clinicbridge').on('click.clinicbridge', '.cb-retry', load);
        return true;
      },
      settings: function () {
        return true;
      },
      dpSettings: function () {
        return true;
      },
      onSave: function () {
        // amo treats the integration as configured only when this resolves true: do so only once our
        // server confirms the token and the account.
        return new Promise(function (resolve) {
          api('/api/v1/widget/session').then(function () { resolve(true); }, function () { resolve(false); });
        });
      },
      destroy: function () {
        $(document).off('click.clinicbridge');
      }
    };
    return this;
  };

  return CustomWidget;
});
